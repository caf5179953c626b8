"""What a member asks the engine for, and why the engine may refuse it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bot.catalog import FieldError, Model, Operation, RequestOptions
from bot.store.jobs import SourceImage


@dataclass(frozen=True)
class Requester:
    guild_id: int
    channel_id: int
    member_id: int
    roles: tuple[int, ...] = ()
    is_moderator: bool = False
    # For a thread: the channel it belongs to (channel rules apply through it).
    parent_channel_id: int | None = None
    # Discord's age restriction ("NSFW") on the channel (a thread: on its parent).
    age_restricted: bool = False


@dataclass(frozen=True)
class InteractionToken:
    """A Discord interaction's follow-up credentials (valid 15 minutes)."""

    token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class JobRequest:
    requester: Requester
    model: Model
    operation: Operation
    options: RequestOptions
    sources: tuple[SourceImage, ...] = ()
    confirmed: bool = False
    # The price the member was shown and went ahead with: a hold found higher only at
    # admission (an edit priced by the orchestrator once its images are in), above the
    # server's threshold, is asked again.
    confirmed_buzz: int | None = None
    interaction: InteractionToken | None = None
    parent_job_id: str | None = None
    # The largest file Discord accepts where the results will be posted.
    upload_limit: int | None = None
    # The id of the AI pre-moderation check made before an enhancement (Engine.precheck):
    # admission takes that check's failure for this request only, never another's.
    precheck_id: str | None = None


class RefusalReason(StrEnum):
    BANNED = "banned"
    CHANNEL = "channel_not_allowed"
    MODEL_DISABLED = "model_disabled"
    INVALID = "invalid_options"
    CONFIRM = "confirmation_needed"
    BALANCE = "insufficient_buzz"
    BUDGET = "budget_exhausted"
    MEMBER_BUSY = "member_concurrency"
    GUILD_BUSY = "guild_concurrency"
    UPSTREAM = "upstream_unavailable"
    SOURCE_RATING = "source_rating"
    # A tool's image is no longer shown (deleted, kept from its channel, under review).
    SOURCE_GONE = "source_gone"
    # The same press again: a tool already working on this image, an enhancement's image.
    ALREADY_STARTED = "already_started"


class Refusal(Exception):
    """The request was not admitted. Nothing was held or charged."""

    def __init__(
        self,
        reason: RefusalReason,
        message: str,
        *,
        errors: list[FieldError] | None = None,
        buzz: int | None = None,
        balance: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.errors = errors or []
        self.buzz = buzz
        self.balance = balance


def require_confirmation(
    buzz: int, confirm_above: int, confirmed: bool, confirmed_buzz: int | None = None
) -> None:
    """Refusal (CONFIRM) for a cost above the server's threshold the member has not confirmed
    (or confirmed at a lower price)."""
    agreed = confirmed and (confirmed_buzz is None or buzz <= confirmed_buzz)
    if buzz > confirm_above and not agreed:
        raise Refusal(
            RefusalReason.CONFIRM,
            f"this costs {buzz:,} Buzz, above the server's "
            f"{confirm_above:,} Buzz confirmation threshold",
            buzz=buzz,
        )
