"""What the engine hands to the outside world: progress, results, review items.

The Discord layer implements these; tests use in-memory or HTTP-backed ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.store.jobs import JobRecord
from bot.store.moderation import ReviewItem


@dataclass(frozen=True)
class ResultImage:
    index: int
    blob_id: str
    mime: str
    width: int | None
    height: int | None
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class StatusUpdate:
    """A job's state as the member should see it. `message` explains an ending in plain words."""

    job: JobRecord
    message: str | None = None
    progress: float | None = None
    # True exactly once per job: on the update that ends it (a later verdict is not an end).
    finished: bool = False
    # The member is told of this ending privately anyway (a kept-back result's notice): a
    # status message out of reach needs no private copy.
    told_privately: bool = False


class PostFailed(Exception):
    """The result could not be posted now. `retry`: later may work (the chat service is
    struggling); otherwise it never will (nowhere left to post). `retry_after`: how long the
    chat service asked to wait, when it said."""

    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


class Publisher(Protocol):
    async def on_status(self, update: StatusUpdate) -> None:
        """The job changed state (or queue position); show it to the member."""

    async def on_preview(self, job: JobRecord, image: bytes, mime: str) -> None:
        """A partial image of a running job (lanes that stream them): show it as it forms."""

    async def find_delivery(self, job: JobRecord) -> list[int] | None:
        """The message ids of this job's results if they were already posted, else None."""

    async def find_status(self, job: JobRecord) -> int | None:
        """The id of the job's status message if one was posted (its record lost), else None."""

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        """Post the images; return the ids of the messages that carry them. Raises
        PostFailed for the chat service's expected faults."""


class ReviewListener(Protocol):
    async def on_review_item(self, item: ReviewItem, job: JobRecord) -> None:
        """A job was blocked or held: put it in front of the guild's moderators."""

    async def on_review_changed(self, item_id: int) -> None:
        """An item changed without a moderator (the member withdrew the request)."""


class OperatorAlerts(Protocol):
    async def on_operator_alert(self, key: str, message: str) -> None:
        """Something only the bot's operator can fix (bad token, no Buzz upstream)."""
