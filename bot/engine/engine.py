"""The job engine: admit → hold Buzz → submit → follow → settle → deliver, restart-safe.

A thin front over its phases: admission (checks, the hold, the stored job), the driver (one
task per job: submit, follow, settle), results (fetch and post, exactly once) and decisions
(cancel, approve, reject). They share one Parts (the stores, the client, the listeners).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from bot.engine.admission import Admission, Quote, new_job_id
from bot.engine.decisions import Decisions
from bot.engine.driver import Driver
from bot.engine.lane import Lane, LaneRequest
from bot.engine.mature import fetch_for_release
from bot.engine.offers import Offers
from bot.engine.parts import HELD_MESSAGE, EngineSettings, J, NotAllowed, Parts, PromptFilter
from bot.engine.publisher import OperatorAlerts, Publisher, ResultImage, ReviewListener
from bot.engine.requests import JobRequest, Requester
from bot.engine.safety import ChannelNow, Safety
from bot.engine.tools import ToolAdmission
from bot.metrics import Metrics
from bot.store.db import Conn, Database, StoreBusy, utcnow
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStore
from bot.store.ledger import Ledger
from bot.store.moderation import ModerationStore

__all__ = ["Engine", "EngineSettings", "NotAllowed", "Quote"]

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        *,
        db: Database,
        jobs: JobStore,
        ledger: Ledger,
        guilds: GuildStore,
        moderation: ModerationStore,
        lane: Lane,
        publisher: Publisher,
        settings: EngineSettings | None = None,
        reviews: ReviewListener | None = None,
        alerts: OperatorAlerts | None = None,
        prompt_filter: PromptFilter | None = None,
        safety: Safety | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.parts = Parts(
            db=db,
            jobs=jobs,
            ledger=ledger,
            guilds=guilds,
            moderation=moderation,
            lane=lane,
            publisher=publisher,
            settings=settings or EngineSettings(),
            clock=clock,
            metrics=metrics or Metrics(),
            reviews=reviews,
            alerts=alerts,
            prompt_filter=prompt_filter,
            safety=safety,
        )
        self.admission = Admission(self.parts)
        self.driver = Driver(self.parts)
        self.decisions = Decisions(self.parts, self.driver)
        # Upscale, Remove background and prompt enhancement; cheaper offers after a refusal.
        self.tools = ToolAdmission(self.parts)
        self.offers = Offers(self.parts)
        self.parts.metrics.watch_in_flight(self.running)

    @property
    def settings(self) -> EngineSettings:
        return self.parts.settings

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.parts.clock

    @property
    def prompt_filter(self) -> PromptFilter | None:
        return self.parts.prompt_filter

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> int:
        """Resume every job that was queued, submitted, running or delivering; settle the
        pre-moderation checks the last stop cut off (beside: they wait on the orchestrator)."""
        resumed = await self.driver.start()
        self.admission.screening.open_checks.kick()
        return resumed

    async def stop(self) -> None:
        await self.admission.screening.open_checks.close()
        await self.driver.stop()

    async def wait_idle(self) -> None:
        """Until no job task runs (tests and benchmarks; wrap in asyncio.timeout)."""
        await self.driver.wait_idle()

    def running(self) -> int:
        return self.driver.running()

    # -- admission ----------------------------------------------------------------------------
    def validate(self, request: JobRequest) -> LaneRequest:
        return self.admission.validate(request)

    def precheck(self, request: JobRequest) -> JobRequest:
        """The request with its own id for a check before an enhancement (held_before_upstream)."""
        return replace(request, precheck_id=f"{new_job_id(self.parts.clock())}-pre")

    async def held_before_upstream(self, request: JobRequest) -> bool:
        """Whether the request's prompt waits for the moderators before anything runs: the
        guild's prompt filter matches it, or AI pre-moderation flags it. For a prompt about to
        go upstream for something else first (an enhancement); admission reuses the verdict."""
        check = self.parts.prompt_filter
        prompt = request.options.prompt
        if check is not None and await check(request.requester.guild_id, prompt) is not None:
            return True
        if request.precheck_id is None:
            request = self.precheck(request)
        return await self.admission.screening.prompt_held(request) is not None

    async def check_sources(self, request: JobRequest) -> None:
        """Refusal when an edit source is rated above what the request's channel allows: for
        a request about to go upstream for something else first (an enhancement, charged)."""
        await self.admission.screening.check_sources(request)

    async def preflight(self, request: JobRequest) -> Quote:
        """Every admission check without holding anything: Refusal, or the quote."""
        return await self.admission.preflight(request)

    async def submit(
        self, request: JobRequest, *, launch: bool = True, quote: Quote | None = None
    ) -> JobRecord:
        """Admit a request: hold its Buzz and queue it (or hold it for review). Raises Refusal.

        With `launch=False` the job waits for `launch()` — for a front end that shows the
        job (its status message) only once it is admitted, before anything happens to it.
        `quote`: the preflight's, whose settings and catalog request are reused when valid."""
        job, item_id = await self.admission.admit(request, quote)
        if job.status is J.HELD:
            await self.parts.notify_review(item_id or None, job)
        if launch:
            await self.launch(job)
        return job

    async def launch(self, job: JobRecord, status_message_id: int | None = None) -> JobRecord:
        """Start an admitted job, with the message that shows it (when there is one)."""
        parts = self.parts
        if status_message_id is not None:
            try:
                await parts.db.write(
                    parts.jobs.update_in, job.id, status_message_id=status_message_id
                )
            except StoreBusy as exc:
                # Admitted and paid for: it runs now (a refusal here would tell the member
                # nothing was charged); its message is recorded once the store takes it.
                log.warning("job %s: status message not recorded yet (%s)", job.id, exc)
                self.driver.background(self._record_status(job.id, status_message_id))
            else:
                job = await parts.jobs.job(job.id) or job
        else:
            await parts.status(job, HELD_MESSAGE if job.status is J.HELD else None)
        if job.status is J.QUEUED:
            self.driver.spawn(job.id)
        return job

    async def _record_status(self, job_id: str, status_message_id: int) -> None:
        """Record the job's status message, trying until the database takes it, then bring
        the message up to date (edits were skipped while the bot did not know it)."""
        parts, attempt = self.parts, 0
        while True:
            await asyncio.sleep(
                min(parts.settings.retry_cap, parts.settings.retry_base * 2 ** min(attempt, 30))
            )
            try:
                await parts.db.write(
                    parts.jobs.update_in, job_id, status_message_id=status_message_id
                )
                break
            except StoreBusy as exc:
                attempt += 1
                log.warning("job %s: status message still not recorded (%s)", job_id, exc)
        job = await parts.jobs.job(job_id)
        if job is not None:  # its end (if it came meanwhile) was counted and logged already
            await parts.status(job, job.error if job.final else None, finished=False)

    # -- decisions ----------------------------------------------------------------------------
    async def cancel(self, job_id: str, actor: Requester) -> JobRecord:
        return await self.decisions.cancel(job_id, actor)

    async def settled(self, job_id: str, within: float) -> JobRecord | None:
        """The job once its run upstream is settled (delivering or over), or as it is after
        `within` seconds: what a cancel's answer reports."""
        await self.driver.wait_ended(job_id, within)
        return await self.parts.jobs.job(job_id)

    async def approval_channel(self, job: JobRecord) -> ChannelNow | None:
        return await self.decisions.approval_channel(job)

    def approve_in(self, tx: Conn, job_id: str, where: ChannelNow | None = None) -> JobRecord:
        return self.decisions.approve_in(tx, job_id, where)

    def reject_in(self, tx: Conn, job_id: str) -> JobRecord:
        return self.decisions.reject_in(tx, job_id)

    def adopt(self, job_id: str) -> None:
        """Start driving a job that became runnable outside submit() (an approval)."""
        self.driver.spawn(job_id)

    async def withheld_images(self, job: JobRecord) -> list[ResultImage]:
        """The images of a result kept from its channel (rated above its level), for a
        moderator's release. Raises ReleaseFailed."""
        return await fetch_for_release(self.parts, job)

    async def notify(self, job: JobRecord, message: str | None, *, finished: bool = False) -> None:
        """Show the member a job's state with a message (a moderator's verdict, say);
        `finished` when this is the job's ending (a rejection), not news about an old one:
        it is then recorded told (see untold_endings)."""
        await self.parts.status(job, message, finished=finished)
        if finished:
            await self.parts.told(job)
