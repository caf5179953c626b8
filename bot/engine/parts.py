"""What the engine's phases share: their dependencies, their settings, and the few things every
phase does — tell the member (status), put a job before the moderators, alert the operator,
and end a job that never ran upstream."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.engine.follow import FollowPolicy, LongPoll
from bot.engine.lane import Lane
from bot.engine.publisher import OperatorAlerts, Publisher, ReviewListener, StatusUpdate
from bot.engine.safety import Safety
from bot.metrics import Metrics
from bot.store.db import Conn, Database, StoreBusy
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStatus, JobStore
from bot.store.ledger import Ledger
from bot.store.lifecycle import ModelLifecycle
from bot.store.moderation import ModerationStore

log = logging.getLogger(__name__)

J = JobStatus
HELD_MESSAGE = "held for a moderator's review before it runs"
PromptFilter = Callable[[int, str], Awaitable[str | None]]


@dataclass(frozen=True)
class EngineSettings:
    policy: FollowPolicy = field(default_factory=LongPoll)
    whatif: bool = False
    deadline: timedelta = timedelta(minutes=30)
    # Waits after the client gave up on a retryable error, growing to the cap.
    retry_base: float = 2.0
    retry_cap: float = 60.0
    # Downloads and posts of a finished job are retried until this long after it ended.
    delivery_deadline: timedelta = timedelta(minutes=30)
    # Unexpected errors (bugs) while delivering: give up after this many, past the deadline.
    delivery_attempts: int = 5
    reconcile_every: float = 60.0
    # After the deadline and an upstream cancel, how long to wait for the orchestrator's
    # final report before settling from the last one it gave.
    expire_grace: timedelta = timedelta(minutes=10)
    simulated: bool = False
    # On stop, how long calls under way on a lane that cannot resume them may take to finish.
    drain: float = 20.0
    # The largest image the bot decodes (media.max_pixels): a result over it cannot be posted.
    max_pixels: int = 40_000_000
    # The largest result file the bot downloads (civitai.max_blob_bytes, where tools run).
    max_result_bytes: int = 64 * 1024 * 1024


class NotAllowed(Exception):
    """A decision on a job that is not this actor's to make, or no longer possible."""


@dataclass
class Parts:
    """The engine's dependencies, shared by its phases (admission, driver, delivery,
    decisions). Built once by the engine."""

    db: Database
    jobs: JobStore
    ledger: Ledger
    guilds: GuildStore
    moderation: ModerationStore
    lane: Lane
    publisher: Publisher
    settings: EngineSettings
    clock: Callable[[], datetime]
    metrics: Metrics
    reviews: ReviewListener | None = None
    alerts: OperatorAlerts | None = None
    prompt_filter: PromptFilter | None = None
    # Channel levels, edit-source ratings, AI pre-moderation (None: nothing is checked).
    safety: Safety | None = None
    # Kinds of operator alert already sent (once per kind, not once per job).
    alerted: set[str] = field(default_factory=set)
    # Models the upstream service retired (off for the deployment).
    lifecycle: ModelLifecycle = field(init=False)

    def __post_init__(self) -> None:
        self.lifecycle = ModelLifecycle(self.db, self.clock)

    # -- telling people ---------------------------------------------------------------------
    async def status(
        self,
        job: JobRecord,
        message: str | None,
        progress: float | None = None,
        *,
        finished: bool | None = None,
        told_privately: bool = False,
    ) -> None:
        """Show the member the job's state; `finished` is true exactly once, at its end."""
        ended = job.final if finished is None else finished
        if ended:
            self.metrics.job_ended(job.model, job.status.value)
        update = StatusUpdate(job, message, progress, ended, told_privately)
        try:
            await self.publisher.on_status(update)
        except Exception:
            log.exception("job %s: status update failed", job.id)

    async def told(self, job: JobRecord) -> None:
        """The job's ending was shown to the member (marked untold when it was settled)."""
        try:
            await self.jobs.told(job.id)
        except StoreBusy as exc:  # told again at the next start: harmless
            log.warning("job %s: its ending not recorded as told (%s)", job.id, exc)

    async def notify_review(self, item_id: int | None, job: JobRecord) -> None:
        if self.reviews is None or item_id is None:
            return
        item = await self.moderation.item(item_id)
        if item is None:
            return
        try:
            await self.reviews.on_review_item(item, job)
        except Exception:
            log.exception("job %s: could not notify moderators", job.id)

    async def alert(self, key: str, message: str) -> None:
        """Tell the operator once per kind of problem, not once per job."""
        if key in self.alerted:
            return
        self.alerted.add(key)
        log.error("operator action needed: %s", message)
        if self.alerts is not None:
            try:
                await self.alerts.on_operator_alert(key, message)
            except Exception:
                log.exception("operator alert failed")

    # -- money and time ---------------------------------------------------------------------
    def release(self, tx: Conn, job_id: str, status: JobStatus, **changes: Any) -> JobRecord:
        """End a job that never ran upstream: nothing charged, the whole hold released."""
        job = self.jobs.transition_in(tx, job_id, status, charged=0, **changes)
        self.ledger.settle_in(tx, job_id, 0)
        return job

    def past_deadline(self, job: JobRecord) -> bool:
        return job.deadline_at is not None and self.clock() >= job.deadline_at

    def past_grace(self, job: JobRecord) -> bool:
        return (
            job.deadline_at is not None
            and self.clock() >= job.deadline_at + self.settings.expire_grace
        )

    def backoff(self, attempt: int, deadline: datetime) -> float:
        return backoff(self.settings, self.clock, attempt, deadline)


def backoff(
    settings: EngineSettings, clock: Callable[[], datetime], attempt: int, deadline: datetime
) -> float:
    """Capped, jittered exponential backoff that does not sleep past `deadline`."""
    ceiling = min(settings.retry_cap, settings.retry_base * 2 ** min(attempt, 30))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    left = (deadline - clock()).total_seconds()
    return max(0.0, min(delay, left))
