"""What the engine's safety checks need from outside: an upstream that rates and moderates
(injected; the Civitai orchestrator implements it), a way to tell a member something
privately (the Discord front end), and the guild's safety settings.

The rules themselves live beside: screening.py (at admission: the channel's level, edit
sources, AI pre-moderation) and mature.py (at the end: a result rated above its channel's
level goes to review; a moderator's release)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.store.jobs import JobRecord
from bot.store.safety import SafetyStore


@dataclass(frozen=True)
class PreVerdict:
    """What AI pre-moderation said about a prompt. Moderators only: never shown to members
    (so the filter cannot be probed)."""

    flagged: bool
    labels: tuple[str, ...] = ()  # the labels it triggered
    scores: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # the model's reason, per label
    cost: int = 0  # what the check cost (the guild pays it)


class PremoderationFailed(Exception):
    """The check itself could not be made (upstream down, the workflow failed, too slow).
    `alert`: the operator alert (key, text) when only the operator can fix it (the token
    refused): with the fallback holding, no job would reach the upstream to tell them.
    `cost` None: what the check was charged could not be read (it is read again later)."""

    def __init__(
        self, message: str, *, cost: int | None = 0, alert: tuple[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.cost = cost
        self.alert = alert


class ReleaseFailed(Exception):
    """A kept-back result could not be fetched for a moderator's release."""


class SafetyUpstream(Protocol):
    async def premoderate(self, check_id: str, prompt: str, labels: tuple[str, ...]) -> PreVerdict:
        """Check a prompt before anything is held; PremoderationFailed when it cannot."""

    async def charge_of(self, check_id: str) -> int | None:
        """What a check left open (cut off by a stop, its charge unread) was charged, stopping
        it if it still runs: 0 when it was never made; None when that cannot be told now."""

    async def rate_source(self, data: bytes, mime: str) -> str | None:
        """The upstream's content rating of an image (pg … xxx), None when it cannot say."""

    async def unlock(self, job: JobRecord) -> None:
        """Let a job's withheld (mature) outputs be fetched: a moderator released them.
        ReleaseFailed when the upstream service refuses."""


@dataclass(frozen=True)
class ChannelNow:
    age_restricted: bool
    parent_id: int | None = None  # a thread's channel: its level is the parent's


class MemberNotices(Protocol):
    async def tell_privately(self, job: JobRecord, text: str) -> bool:
        """Tell the job's member something only they see; False when it could not be said."""

    async def channel_now(self, channel_id: int) -> ChannelNow | None:
        """The channel as Discord describes it now: its age restriction (a thread: its
        parent's) and a thread's parent; None when it cannot be told (the channel is gone or
        out of sight)."""

    async def cannot_post(self, channel_id: int) -> str | None:
        """Why a result could not be posted in the channel now (deleted, the bot's
        permissions taken), for a moderator; None when it can, or when Discord cannot say."""


@dataclass
class Safety:
    """The engine's safety parts: the guild settings; the upstream that rates and checks
    (None: no pre-moderation, no source ratings); the member's private channel."""

    store: SafetyStore
    upstream: SafetyUpstream | None = None
    notices: MemberNotices | None = None
