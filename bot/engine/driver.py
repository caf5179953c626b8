"""The driver: one task per active job, carrying it from its stored state to its end.

A job's state lives in SQLite; the task that drives it can die at any moment and a new one
(after a restart, or the reconciler finding an orphan) carries on from the stored state:
- queued: (re)submit with externalId = job id, so a retry finds the same workflow;
- submitted/running: follow the workflow until it ends, then settle and move on, in one
  transaction (status + ledger + review item);
- delivering: the results phase (results.py) fetches and posts the images, exactly once.
Only the job's own task changes a running job; others (cancel) set a flag and wake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from bot.civitai.errors import (
    Forbidden,
    NotFound,
    OrchestratorError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from bot.civitai.models import Workflow, WorkflowStatus
from bot.engine.parts import J, Parts
from bot.engine.publisher import PostFailed
from bot.engine.results import Results
from bot.engine.sources import SourceUploads
from bot.logs import bind_job
from bot.store.db import Conn
from bot.store.jobs import JobRecord, JobStatus, TransitionError
from bot.store.ledger import Settlement

log = logging.getLogger(__name__)


class Driver:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.results = Results(parts, self.sleep)
        self.sources = SourceUploads(parts)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._closing = False
        self._reconciler: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()

    # -- the tasks ----------------------------------------------------------------------------
    async def start(self) -> int:
        """Resume every job that was queued, submitted, running or delivering."""
        resumed = await self._adopt_orphans()
        if resumed:
            log.info("resumed %d job(s)", len(resumed))
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
        task.add_done_callback(lambda _t, j=job_id: self._forget(j))

    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._wake.pop(job_id, None)
        self.results.forget(job_id)
        self.sources.forget(job_id)

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
        while not self._closing:
            job = await self.parts.jobs.get(job_id)
            if job is None or job.final or job.status is J.HELD:
                return
            bind_job(job.id, job.guild_id)  # every log line of this task names the job
            try:
                if job.status is J.QUEUED:
                    await self._submit(job)
                elif job.status in (J.SUBMITTED, J.RUNNING):
                    await self._follow(job)
                elif job.status is J.DELIVERING:
                    await self.results.deliver(job)
                failures = 0
            except asyncio.CancelledError:
                raise
            except (Unavailable, TransitionError, PostFailed) as exc:
                failures += 1
                delay = min(settings.retry_cap, settings.retry_base * 2 ** (failures - 1))
                log.warning("job %s: %s; trying again in %.0fs", job_id, exc, delay)
                await self.sleep(job_id, delay)
            except Exception:
                failures += 1
                log.exception("job %s: unexpected error (attempt %d)", job_id, failures)
                await self.sleep(job_id, min(settings.retry_cap, 5.0 * failures))

    async def _submit(self, job: JobRecord) -> None:
        parts = self.parts
        stop = job.cancel_requested_by is not None or parts.past_deadline(job)
        if stop and job.submit_attempted_at is None:
            # Nothing ever reached the orchestrator: nothing to charge.
            if job.cancel_requested_by is not None:
                await self._finish_unsubmitted(job, J.CANCELED, "canceled")
            else:
                await self._finish_unsubmitted(job, J.EXPIRED, "it could not be submitted in time")
            return
        # Once any attempt may have reached the orchestrator, the job remembers it until the
        # orchestrator answers: a later attempt that was refused outright proves nothing about
        # the earlier ones.
        may_exist = job.submit_attempted_at is not None
        if not may_exist:
            # From here on the workflow may exist upstream even if we never hear back: a
            # restart re-submits (same externalId, so the same workflow) instead of giving up.
            job = await parts.db.write(self._mark_attempt, job.id)
        template = parts.client.template([await self._resolved_step(job)], job.id)
        # Recovering a workflow we mean to stop: get it back now, follow it to its end.
        wait = 0 if stop else parts.settings.policy.submit_wait
        try:
            workflow = await parts.client.submit(template, wait=wait)
        except Unavailable as exc:
            if not exc.maybe_accepted and not may_exist:
                # Every attempt so far was refused outright: nothing exists upstream.
                await parts.db.write(parts.jobs.update, job.id, submit_attempted_at=None)
            elif stop and parts.past_grace(job):
                # We asked to stop it, and the orchestrator never said whether it exists.
                log.error(
                    "job %s: could not learn whether its workflow exists upstream; ending it "
                    "uncharged (check the orchestrator for externalId %s)",
                    job.id,
                    job.id,
                )
                await self._finish_unsubmitted(job, J.EXPIRED, "it could not be confirmed in time")
                return
            raise
        except ValidationFailed as exc:
            if self.sources.refused(job, exc.fields):
                # A source URL it cannot use (the blob lost upstream): again, sources inline.
                raise Unavailable(f"the orchestrator refused the source URLs ({exc})") from exc
            fields = ", ".join(exc.fields) or "the request"
            await self._finish_unsubmitted(
                job,
                J.FAILED,
                f"the orchestrator refused it ({fields}); nothing was charged",
                detail=str(exc),
            )
            return
        except (Unauthorized, Forbidden) as exc:
            await parts.alert("auth" if isinstance(exc, Unauthorized) else "forbidden", str(exc))
            await self._finish_unsubmitted(
                job,
                J.FAILED,
                "the bot cannot place orders with the orchestrator right now; nothing was "
                "charged and the operator has been told",
                detail=str(exc),
            )
            return
        parts.alerted.discard("auth")
        parts.alerted.discard("forbidden")
        job = await parts.db.write(
            parts.jobs.transition,
            job.id,
            J.SUBMITTED,
            workflow_id=workflow.id,
            workflow_status=str(workflow.status),
            submitted_at=parts.clock(),
        )
        await parts.status(job, None)
        if job.cancel_requested_by is not None and workflow.id:
            await self.cancel_upstream(workflow.id)
        await self._observe(job, workflow)

    def _mark_attempt(self, tx: Conn, job_id: str) -> JobRecord:
        self.parts.jobs.update(tx, job_id, submit_attempted_at=self.parts.clock())
        marked = self.parts.jobs.load(tx, job_id)
        assert marked is not None
        return marked

    async def _finish_unsubmitted(
        self, job: JobRecord, status: JobStatus, message: str, *, detail: str | None = None
    ) -> None:
        parts = self.parts
        job = await parts.db.write(parts.release, job.id, status, error=message, detail=detail)
        await parts.status(job, message)

    async def _resolved_step(self, job: JobRecord) -> dict[str, Any]:
        """The stored step with source://N references replaced by the sources' blob URLs
        (each uploaded once, see bot.engine.sources), or data URLs when uploads are refused."""
        return await self.sources.step(job)

    async def _follow(self, job: JobRecord) -> None:
        """Follow the workflow to its end. Past the deadline, ask the orchestrator to stop it
        and settle from what it reports once it has ended (a success is still delivered); if
        it never ends, settle from its last report after a grace period."""
        parts = self.parts
        assert job.workflow_id is not None
        attempt = 0
        canceled_sent = expired = False
        workflow: Workflow | None = None
        while True:
            job = await parts.jobs.get(job.id) or job
            if job.cancel_requested_by is not None and not canceled_sent:
                canceled_sent = True
                await self.cancel_upstream(job.workflow_id)
            if parts.past_deadline(job) and not expired:
                expired = True
                await self.cancel_upstream(job.workflow_id)
            if expired and workflow is not None and parts.past_grace(job):
                log.error(
                    "job %s: workflow %s never ended; settling from its last report",
                    job.id,
                    job.workflow_id,
                )
                await self._conclude(job, workflow, forced=J.EXPIRED)
                return
            delay, wait = parts.settings.policy.next_request(attempt)
            if expired:
                delay, wait = min(delay, parts.settings.retry_cap), min(wait, 10)
            if delay:
                await self.sleep(job.id, delay)
            attempt += 1
            try:
                workflow = await parts.client.get(job.workflow_id, wait=wait)
            except NotFound:
                # The orchestrator lost it: nothing to charge, nothing to deliver.
                log.error("job %s: workflow %s is gone upstream", job.id, job.workflow_id)
                await self._conclude(job, Workflow(id=job.workflow_id, status="failed"))
                return
            if workflow.terminal:
                late = expired and workflow.status != WorkflowStatus.SUCCEEDED
                await self._conclude(job, workflow, forced=J.EXPIRED if late else None)
                return
            await self._observe(job, workflow)

    async def cancel_upstream(self, workflow_id: str | None) -> None:
        """Ask the orchestrator to stop a workflow. Best effort: whatever it answers, the job
        is settled from what it reports when the workflow ends."""
        if not workflow_id:
            return
        try:
            await self.parts.client.cancel(workflow_id)
        except OrchestratorError as exc:
            log.warning("workflow %s: cancel not accepted (%s)", workflow_id, exc)

    async def _observe(self, job: JobRecord, workflow: Workflow) -> bool:
        """Record progress; conclude if the workflow ended. True when the job left running."""
        if workflow.terminal:
            await self._conclude(job, workflow)
            return True
        status, position = str(workflow.status), workflow.queue_position()
        if job.status is J.RUNNING and (status, position) == (
            job.workflow_status,
            job.queue_position,
        ):
            return False
        changes: dict[str, Any] = {"workflow_status": status, "queue_position": position}
        if status == WorkflowStatus.PROCESSING and job.started_at is None:
            changes["started_at"] = self.parts.clock()
        parts = self.parts
        job = await parts.db.write(parts.jobs.transition, job.id, J.RUNNING, **changes)
        await parts.status(job, None, workflow.progress())
        return False

    async def _conclude(
        self, job: JobRecord, workflow: Workflow, *, forced: JobStatus | None = None
    ) -> None:
        parts = self.parts
        charged = workflow.charged()
        status = forced or ending_status(workflow)
        images = [
            {"blob_id": img.id, "width": img.width, "height": img.height}
            for img in workflow.images()
        ]
        message = ending_message(status, charged)

        def settle(tx: Conn) -> tuple[JobRecord, Settlement, int | None]:
            """The job's ending, its money and its review item commit together."""
            ended = parts.jobs.transition(
                tx,
                job.id,
                status,
                charged=charged,
                workflow_status=str(workflow.status),
                result_images=images,
                error=None if status is J.DELIVERING else message,
                # A long-poll may never have seen "processing": take the orchestrator's time.
                started_at=job.started_at or workflow.started_at,
                deliver_by=(
                    parts.clock() + parts.settings.delivery_deadline
                    if status is J.DELIVERING
                    else None
                ),
            )
            settlement = parts.ledger.settle(tx, job.id, charged)
            item_id = None
            if status is J.BLOCKED:
                reason = block_reason(workflow)
                item_id = parts.moderation.create_item(tx, job.guild_id, job.id, "blocked", reason)
            return ended, settlement, item_id

        job, settlement, item_id = await parts.db.write(settle)
        parts.metrics.settled(settlement.charged, settlement.loss)
        if settlement.loss:
            log.warning(
                "job %s: charged %d above what the member could pay", job.id, settlement.loss
            )
        if status is J.DELIVERING:
            self.results.remember(job.id, workflow)
        await parts.status(job, None if status is J.DELIVERING else message)
        if item_id is not None:
            await parts.notify_review(item_id, job)


def ending_status(workflow: Workflow) -> JobStatus:
    """What a job becomes when its workflow ended this way."""
    if workflow.blocked():
        return J.BLOCKED
    if workflow.status == WorkflowStatus.SUCCEEDED:
        return J.DELIVERING if workflow.images() else J.FAILED
    return {
        WorkflowStatus.EXPIRED.value: J.EXPIRED,
        WorkflowStatus.CANCELED.value: J.CANCELED,
    }.get(str(workflow.status), J.FAILED)


def ending_message(status: JobStatus, charged: int) -> str | None:
    paid = f"{charged:,} Buzz charged" if charged else "nothing was charged"
    return {
        J.DELIVERING: None,
        J.FAILED: f"the image generation failed; {paid}",
        J.BLOCKED: "the content filter blocked this request; moderators will review it",
        J.CANCELED: f"canceled; {paid}",
        J.EXPIRED: f"it did not finish in time; {paid}",
    }.get(status)


def block_reason(workflow: Workflow) -> str:
    for job in workflow.jobs():
        if job.blocked_reason:
            return job.blocked_reason
    for img in workflow.images():
        if img.blocked_reason:
            return f"output image blocked: {img.blocked_reason}"
    errors = workflow.output_errors()
    return errors[0] if errors else "blocked by the content filter"
