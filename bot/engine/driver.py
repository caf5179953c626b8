"""The driver: one task per active job, carrying it from its stored state to its end.

A job's state lives in SQLite; the task that drives it can die at any moment and a new one
(after a restart, or the reconciler finding an orphan) carries on from the stored state:
- queued/submitted/running: the lane takes the job to its end upstream (for the Civitai
  orchestrator: submit with externalId = job id, follow); the engine settles the ending it
  reports in one transaction (status + ledger + review item);
- delivering: the results phase (results.py) fetches and posts the images, exactly once.
Only the job's own task changes a running job; others (cancel) set a flag and wake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Coroutine
from typing import Any

from bot.catalog.tools import tool_of
from bot.engine import mature
from bot.engine.lane import Ending, UpstreamUnavailable
from bot.engine.lane_run import LaneRun
from bot.engine.lifecycle import retirement_alert, unavailable_message
from bot.engine.parts import J, Parts
from bot.engine.publisher import PostFailed
from bot.engine.results import Results
from bot.logs import bind_job
from bot.store import audit, results
from bot.store.db import Conn, StoreBusy, store_busy
from bot.store.jobs import IN_FLIGHT, JobRecord, JobStatus, TransitionError
from bot.store.ledger import Settlement

log = logging.getLogger(__name__)


class Driver:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.results = Results(parts, self.sleep)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._closing = False
        self._reconciler: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        # Jobs whose lane call is under way (until its ending is settled) and cannot be picked
        # up again after a restart: what a stop waits for.
        self._calling: set[str] = set()
        # Endings the lane reported whose settlement has not committed yet (a locked or full
        # database): settled when the job's task tries again, never asked of the lane twice
        # (an OpenAI call would be made, and paid for upstream, again).
        self._unsettled: dict[str, Ending] = {}
        self._no_calls = asyncio.Event()
        self._no_calls.set()
        # Set when a job's run is settled (or its task ends): what a cancel's answer waits for.
        self._ended: dict[str, asyncio.Event] = {}

    # -- the tasks ----------------------------------------------------------------------------
    async def start(self) -> int:
        """Resume every job that was queued, submitted, running or delivering."""
        # Read before any job is resumed: one ending now is told by its own task.
        untold = await self.parts.jobs.untold()
        await self._find_statuses()
        resumed = await self._adopt_orphans()
        if resumed:
            log.info("resumed %d job(s)", len(resumed))
        self.background(self._tell_untold(untold))
        self._reconciler = asyncio.create_task(self._reconcile(), name="engine-reconcile")
        return len(resumed)

    async def _adopt_orphans(self) -> list[str]:
        """Drive every active job that has no task (after a restart, or when a caller was
        cancelled after its admission had already committed)."""
        active = await self.parts.jobs.active()
        orphans = [job.id for job in active if job.id not in self._tasks]
        for job_id in orphans:
            self.spawn(job_id)
        return orphans

    async def _find_statuses(self) -> None:
        """A job whose status message was posted by a process that died before recording
        it: that message is found and kept up to date, not left saying "Queued" for good."""
        for job in await self.parts.jobs.active():
            if job.status_message_id is not None or job.interaction_token is None:
                continue
            found = await self.parts.publisher.find_status(job)
            if found is None:
                continue
            try:
                await self.parts.db.write(
                    self.parts.jobs.update_in, job.id, status_message_id=found
                )
            except StoreBusy as exc:  # the job runs all the same; its message is not kept up
                log.warning("job %s: its status message not recorded (%s)", job.id, exc)

    async def _reconcile(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.parts.settings.reconcile_every)
            try:
                adopted = await self._adopt_orphans()
            except Exception:
                log.exception("reconcile failed")
                continue
            if adopted:
                log.warning("adopted %d job(s) that had no task: %s", len(adopted), adopted)

    async def stop(self) -> None:
        self._closing = True
        drain = self.parts.settings.drain
        if self._calling and drain > 0:
            # A call cut short is paid for upstream and made again after the restart: let the
            # calls under way finish and settle, for a while. No new call starts meanwhile.
            log.info("stopping: waiting up to %.0fs for %d call(s)", drain, len(self._calling))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain):
                    await self._no_calls.wait()
        tasks = [*self._tasks.values(), *self._side_tasks]
        if self._reconciler is not None:
            tasks.append(self._reconciler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Until no job task runs (tests and benchmarks; wrap in asyncio.timeout)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    def running(self) -> int:
        return len(self._tasks)

    def spawn(self, job_id: str) -> None:
        if job_id in self._tasks or self._closing:
            return
        task = asyncio.create_task(self._drive(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(functools.partial(self._forget, job_id))

    def _forget(self, job_id: str, _task: object = None) -> None:
        self._tasks.pop(job_id, None)
        self._unsettled.pop(job_id, None)
        self._calling.discard(job_id)
        if not self._calling:
            self._no_calls.set()
        self._wake.pop(job_id, None)
        self._mark_ended(job_id)
        self.results.forget(job_id)

    def _mark_ended(self, job_id: str) -> None:
        event = self._ended.pop(job_id, None)
        if event is not None:
            event.set()

    async def wait_ended(self, job_id: str, within: float) -> None:
        """Until the job's run upstream is settled (it is delivering or over), at most
        `within` seconds. A job no task drives returns at once: nothing here will change it."""
        if job_id not in self._tasks:
            return
        # Made before the read: a settlement committing after it sets this event.
        event = self._ended.setdefault(job_id, asyncio.Event())
        job = await self.parts.jobs.job(job_id)
        if job is None or job.status not in IN_FLIGHT:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=within)

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def wake(self, job_id: str) -> None:
        event = self._wake.get(job_id)
        if event is not None:
            event.set()

    async def sleep(self, job_id: str, seconds: float) -> None:
        """Sleep, but wake early when someone cancels the job."""
        event = self._wake.setdefault(job_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
        event.clear()

    # -- driving a job ------------------------------------------------------------------------
    async def _drive(self, job_id: str) -> None:
        settings = self.parts.settings
        failures = 0
        # Stopping: only an ending already reported (its settlement refused so far) is tried
        # again, within the stop's drain time.
        while not self._closing or job_id in self._unsettled:
            try:
                job = await self.parts.jobs.job(job_id)
            except sqlite3.OperationalError as exc:
                # A read refused for now (a locked or failing database): the task must not die
                # of it, or the job waits for the sweep, and an ending reported but not settled
                # yet (images paid for) is dropped and made again. Any other error is a bug.
                if store_busy(exc) is None:
                    raise
                failures += 1
                delay = self._backoff(failures)
                log.warning(
                    "job %s: cannot read it (%s); trying again in %.0fs", job_id, exc, delay
                )
                await self.sleep(job_id, delay)
                continue
            if job is None or job.final or job.status is J.HELD:
                return
            bind_job(job.id, job.guild_id)  # every log line of this task names the job
            try:
                if job.status in (J.QUEUED, J.SUBMITTED, J.RUNNING):
                    await self._run(job)
                elif job.status is J.DELIVERING:
                    await self.results.deliver(job)
                failures = 0
            except asyncio.CancelledError:
                raise
            except (UpstreamUnavailable, TransitionError, PostFailed, StoreBusy) as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("job %s: %s; trying again in %.0fs", job_id, exc, delay)
                await self.sleep(job_id, delay)
            except Exception:
                failures += 1
                log.exception("job %s: unexpected error (attempt %d)", job_id, failures)
                await self.sleep(job_id, min(settings.retry_cap, 5.0 * failures))

    def _backoff(self, failures: int) -> float:
        settings = self.parts.settings
        # The exponent is capped: 2.0 * 2**1024 overflows a float (a job stuck ~17 h).
        return min(settings.retry_cap, settings.retry_base * 2 ** min(failures - 1, 30))

    async def _run(self, job: JobRecord) -> None:
        """The lane takes the job to its end upstream; the engine settles what it reports."""
        ending = self._unsettled.get(job.id)
        if self._closing and ending is None:
            return  # stopping: no new call (the job resumes at the next start)
        if not self._resumes(job):
            self._calling.add(job.id)
            self._no_calls.clear()
        try:
            if ending is None:
                run = LaneRun(self.parts, job, self.sleep)
                ending = self._unsettled[job.id] = await self.parts.lane.run(run)
                job = run.job
            await self._conclude(job, ending)
            self._unsettled.pop(job.id, None)
        finally:
            # A reported ending not settled yet keeps its call "under way": a stop waits for it.
            if job.id not in self._unsettled:
                self._calling.discard(job.id)
            if not self._calling:
                self._no_calls.set()

    def _resumes(self, job: JobRecord) -> bool:
        """Whether the job's call is picked up again after a restart (no stop waits for it)."""
        lane = self.parts.lane
        resumes = getattr(lane, "resumes", None)
        if resumes is not None:
            return bool(resumes(job))
        return bool(getattr(lane, "resumable", True))

    async def cancel_upstream(self, job: JobRecord) -> None:
        await self.parts.lane.cancel(job)

    async def _conclude(self, job: JobRecord, ending: Ending) -> None:
        parts = self.parts
        # A result rated above what the job's channel allows goes to review instead.
        diverted = mature.diversion(job, ending, await mature.allowed_now(parts, job, ending))
        ending = diverted.ending if diverted is not None else ending
        status, charged = ending.status, ending.charged
        message = ending.message or ending_message(status, charged, job.model)
        # Charged for a failure the orchestrator booked no refund for: a moderator may refund.
        unrefunded = status in (J.FAILED, J.EXPIRED) and charged > 0
        if unrefunded and ending.message is None:
            message = f"{message}; a moderator will look at the charge"
        if ending.unavailable_model is not None:
            message = await unavailable_message(parts, job, ending.unavailable_model, charged)

        def settle(tx: Conn) -> tuple[JobRecord, Settlement, int | None, bool]:
            """The job's ending, its money and its review item commit together."""
            changes: dict[str, Any] = {
                "charged": charged,
                "error": None if status is J.DELIVERING else message,
                # A long-poll may never have seen "processing": take upstream's time.
                "started_at": job.started_at or ending.started_at,
            }
            if ending.upstream_status is not None:
                changes["workflow_status"] = ending.upstream_status
            if ending.images:
                changes["result_images"] = list(ending.images)
            if ending.output is not None:
                changes["output"] = ending.output
            if status is J.DELIVERING:
                changes["deliver_by"] = parts.clock() + parts.settings.delivery_deadline
            if ending.usage is not None:
                changes["usage"] = ending.usage
            ended = parts.jobs.transition_in(tx, job.id, status, detail=ending.detail, **changes)
            settlement = parts.ledger.settle_in(tx, job.id, charged)
            if ending.results:  # in-band images: kept with the job before anything is posted
                results.put_in(tx, job.id, ending.results)
            if ending.usage is not None:  # for reconciling with the upstream service's bill
                audit.record(
                    tx,
                    parts.clock(),
                    "upstream.usage",
                    guild_id=job.guild_id,
                    target=job.id,
                    lane=parts.lane.name,
                    model=job.model,
                    status=status.value,
                    charged=charged,
                    usage=ending.usage,
                )
            retired = ending.unavailable_model is not None and parts.lifecycle.retire_in(
                tx, ending.unavailable_model, ending.detail, job.id
            )
            if status is not J.DELIVERING:  # told below; told at the next start if not
                parts.jobs.untold_in(tx, job.id)
            item_id = None
            if diverted is not None:
                item_id = diverted.open_in(parts, tx, job)
            elif status is J.BLOCKED:
                reason = ending.block_reason or "blocked by the content filter"
                item_id = parts.moderation.create_item_in(
                    tx, job.guild_id, job.id, "blocked", reason
                )
            elif unrefunded:
                item_id = parts.moderation.create_item_in(
                    tx,
                    job.guild_id,
                    job.id,
                    "undelivered",
                    f"{status.value}, yet {charged:,} Buzz charged: {no_refund_reason(ending)}",
                )
            return ended, settlement, item_id, retired

        job, settlement, item_id, retired = await parts.db.write(settle)
        self._mark_ended(job.id)
        parts.metrics.settled(settlement.charged, settlement.loss)
        if settlement.loss:
            log.warning(
                "job %s: charged %d above what the member could pay", job.id, settlement.loss
            )
        if retired:
            await retirement_alert(parts, job, ending)
        if status is J.DELIVERING:
            self.results.remember(job.id, ending.upstream)
        if status is J.DELIVERING:
            await parts.status(job, None)
        else:
            await self._tell(job, message, diverted.notice if diverted is not None else None)
        if item_id is not None:
            await parts.notify_review(item_id, job)

    async def _tell(self, job: JobRecord, message: str | None, notice: str | None) -> None:
        """Show the member how the job ended (its status, a kept-back result's private
        notice), then record it told."""
        await self.parts.status(job, message, told_privately=notice is not None)
        if notice is not None:
            await mature.tell_member(self.parts, job, notice)
        await self.parts.told(job)

    async def _tell_untold(self, untold: list[JobRecord]) -> None:
        """Endings settled by a process that died (or stopped) before telling them (a
        delivery's too: results.py). Their review items are posted by the board's own pass
        at the start."""
        for job in untold:
            bind_job(job.id, job.guild_id)
            try:
                await self._tell(job, job.error, await mature.untold_notice(self.parts, job))
            except Exception:  # told at the next start instead
                log.exception("job %s: its ending could not be told", job.id)


def no_refund_reason(ending: Ending) -> str:
    """Why a failed or expired job's charge stands, for the moderators deciding a refund."""
    if ending.detail and ending.upstream_status == "succeeded":
        return ending.detail[:300]  # it ran and charged, yet left nothing to post
    return "the orchestrator booked no refund"


def ending_message(status: JobStatus, charged: int, model: str = "") -> str | None:
    paid = f"{charged:,} Buzz charged" if charged else "nothing was charged"
    # A tool's job failing is not an image generation failing (none was asked for yet).
    tool = tool_of(model)
    what = tool.label if tool is not None else "the image generation"
    return {
        J.DELIVERING: None,
        J.FAILED: f"{what} failed; {paid}",
        J.BLOCKED: "the content filter blocked this request; moderators will review it",
        J.CANCELED: f"canceled; {paid}",
        J.EXPIRED: f"it did not finish in time; {paid}",
    }.get(status)
