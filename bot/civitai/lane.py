"""The Civitai orchestrator as a lane: a job is a workflow with one step, submitted with
externalId = the job id (a retry finds the same workflow), followed by long-poll until it ends,
and settled from the workflow's own transactions.

A submit that may have reached the orchestrator is remembered (per job, not per call) until
the orchestrator has said otherwise: cancel, deadline and restart of such a job first
recover the workflow through its externalId, stop it if it still runs, and settle from what
the orchestrator reports. Ledger = orchestrator charges, always.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.catalog import build_request
from bot.catalog.request import ImageRequest, RequestOptions
from bot.civitai.client import OrchestratorClient
from bot.civitai.downloads import BLOB_HOST_ALERT, fetch_workflow_images, refused_blobs
from bot.civitai.endings import ending_of, look_again, unconfirmed
from bot.civitai.errors import (
    Forbidden,
    NotFound,
    OrchestratorError,
    Redirected,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    operator_alert,
)
from bot.civitai.models import Workflow, WorkflowStatus
from bot.civitai.retired import refused_as_gone, unsupported
from bot.civitai.safety import mature_fields
from bot.civitai.sources import SourceUploads
from bot.civitai.tool_sources import ResultSources, SourceUnavailable, refs_in, swap
from bot.engine.follow import FollowPolicy
from bot.engine.lane import Ending, Run, UpstreamUnavailable
from bot.engine.publisher import ResultImage
from bot.engine.requests import JobRequest
from bot.media.pool import ImagePool
from bot.metrics import Metrics
from bot.store.jobs import SOURCE_REF, JobRecord, JobStatus, JobStore, SourceImage

log = logging.getLogger(__name__)

J = JobStatus
# A workflow answered "not found" this many times in a row is taken as gone upstream.
NOT_FOUND_CONFIRMATIONS = 3
# A failed workflow still showing a charge is read again this many times (after 5 s, then
# 10 s: at most the engine's retry cap) before it is settled: its refund may be booked late.
REFUND_CHECKS = 2
REFUND_WAIT = 5.0
# Reads refused in a row are asked again after the engine's retry cap, doubling up to this.
MAX_REFUSED_WAIT = 900.0
# A price check is asked while the member waits ("thinking…"): past this many seconds (a 429's
# Retry-After of minutes, retried five times over) the local estimate is held instead.
WHATIF_WAIT = 20.0


class FollowRefused(UpstreamUnavailable):
    """The orchestrator refused the token while the bot followed a workflow."""


class CivitaiLane:
    name = "civitai"
    # Steps besides imageGen this lane runs (the results' Upscale and Remove background, and
    # prompt enhancement before an image).
    tool_steps = frozenset({"imageUpscaler", "imageBackgroundRemoval", "promptEnhancement"})

    def __init__(
        self,
        client: OrchestratorClient,
        jobs: JobStore,
        *,
        policy: FollowPolicy,
        retry_cap: float,
        backoff: Callable[[int, datetime], float],
        clock: Callable[[], datetime],
        metrics: Metrics,
        sources: SourceUploads,
        images: ImagePool,
        max_pixels: int,
    ) -> None:
        self.client, self.jobs = client, jobs
        # Results are decoded whole before they count, in turn with all other image work.
        self.images, self.max_pixels = images, max_pixels
        # Edit sources go by blob URL, each uploaded once (data URLs when uploads fail).
        self.sources = sources
        self.policy, self.retry_cap = policy, retry_cap
        self.backoff, self.clock, self.metrics = backoff, clock, metrics
        self.results = ResultSources(client, jobs, clock, max_pixels)

    # -- the lane's interface -----------------------------------------------------------------
    def validate(
        self, request: JobRequest, options: RequestOptions, input_size: tuple[int, int] | None
    ) -> ImageRequest:
        """The catalog's closed imageGen input for the request, priced from the guide's table."""
        return build_request(request.model, request.operation, options, input_size=input_size)

    async def run(self, run: Run) -> Ending:
        ending = await self._run(run)
        # Kept while the job is retried (an exception): how its sources go is decided once.
        self.sources.forget(run.job.id)
        self.results.forget(run.job.id)
        return ending

    async def _run(self, run: Run) -> Ending:
        if run.job.status is J.QUEUED:
            submitted = await self._submit(run)
            if isinstance(submitted, Ending):
                return submitted
            return await self._follow(run, submitted)
        return await self._follow(run, None)

    async def cancel(self, job: JobRecord) -> None:
        """Ask the orchestrator to stop the workflow. Best effort: whatever it answers, the job
        is settled from what it reports when the workflow ends."""
        if not job.workflow_id:
            return
        try:
            await self.client.cancel(job.workflow_id)
        except OrchestratorError as exc:
            log.warning("workflow %s: cancel not accepted (%s)", job.workflow_id, exc)

    async def whatif(
        self, job_id: str, step: dict[str, Any], sources: tuple[SourceImage, ...] = ()
    ) -> int | None:
        try:
            async with asyncio.timeout(WHATIF_WAIT):
                return await self._whatif(job_id, step, sources)
        except TimeoutError:
            log.warning(
                "whatif for %s took over %.0fs; holding the local estimate", job_id, WHATIF_WAIT
            )
            return None

    async def _whatif(
        self, job_id: str, step: dict[str, Any], sources: tuple[SourceImage, ...]
    ) -> int | None:
        try:  # a posted result as the source: only its blob URL (nothing is stored yet)
            step = await self.results.resolve(step, None)
        except SourceUnavailable:
            return None
        if wanted := set(refs_in(step, SOURCE_REF)):
            # Only described so far (a preflight: Discord's sizes, no bytes): nothing to send.
            if not sources or not all(s.data for s in sources):
                return None
            # Uploaded now, as the submit sends them (which then reuses the uploads).
            sent = {
                ref: await self.sources.reference(job_id, sources[int(ref[len(SOURCE_REF) :])])
                for ref in wanted
            }
            step = swap(step, sent)
        # A whatif claims its externalId upstream, so it must not use the job's own id.
        template = self.client.template([step], f"{job_id}-whatif")
        try:
            estimate = await self.client.submit(template, whatif=True)
        except (Unauthorized, Forbidden):
            raise
        except OrchestratorError as exc:
            log.warning("whatif failed for %s, holding the local estimate: %s", job_id, exc)
            return None
        return estimate.cost.total if estimate.cost else None

    async def fetch_results(
        self,
        job: JobRecord,
        upstream: Any,
        deadline: datetime,
        sleep: Callable[[float], Awaitable[None]],
        alert: Callable[[str, str], Awaitable[None]],
    ) -> tuple[list[ResultImage], int]:
        return await fetch_workflow_images(
            self.client,
            job,
            upstream if isinstance(upstream, Workflow) else None,
            deadline,
            sleep,
            alert,
            backoff=self.backoff,
            clock=self.clock,
            metrics=self.metrics,
            images=self.images,
            max_pixels=self.max_pixels,
        )

    # -- submitting ---------------------------------------------------------------------------
    async def _submit(self, run: Run) -> Workflow | Ending:
        job = run.job
        stop = job.cancel_requested_by is not None or run.past_deadline()
        if stop and job.submit_attempted_at is None:
            # Nothing ever reached the orchestrator: nothing to charge.
            if job.cancel_requested_by is not None:
                return Ending(J.CANCELED, message="canceled")
            return Ending(J.EXPIRED, message="it could not be submitted in time")
        # Once any attempt may have reached the orchestrator, the job remembers it until the
        # orchestrator answers: a later attempt that was refused outright proves nothing about
        # the earlier ones.
        may_exist = job.submit_attempted_at is not None
        if not may_exist:
            # From here on the workflow may exist upstream even if we never hear back: a
            # restart re-submits (same externalId, so the same workflow) instead of giving up.
            await run.mark_attempt()
        try:
            step = await self.results.resolve(await self.sources.step(job), job)
        except SourceUnavailable as exc:
            return Ending(J.FAILED, message=f"{exc}; nothing was charged", detail=str(exc))
        # allowMatureContent follows the level the job's channel allows.
        template = self.client.template([step], job.id, **mature_fields(job))
        # Recovering a workflow we mean to stop: get it back now, follow it to its end.
        wait = 0 if stop else self.policy.submit_wait
        try:
            workflow = await self.client.submit(template, wait=wait)
        except Unavailable as exc:
            if not exc.maybe_accepted and not may_exist:
                # Every attempt so far was refused outright: nothing exists upstream.
                await run.clear_attempt()
            elif stop and run.past_grace():
                return await unconfirmed(run)
            raise
        except ValidationFailed as exc:
            uncertain = may_exist or exc.maybe_accepted
            if self.sources.refused(job, exc.fields) or self.results.refused(job, exc.fields):
                # A source URL it cannot use (the blob lost upstream): again, sources inline.
                if not uncertain:  # refused outright: the next attempt starts afresh
                    await run.clear_attempt()
                raise Unavailable(f"the orchestrator refused the source URLs ({exc})") from exc
            if uncertain and not exc.fields:
                # A 400 naming no field (a firewall's page) after an attempt that may have made
                # the workflow: it may run and charge, so it is looked for again.
                return await look_again(run, exc, stop and run.past_grace())
            fields = ", ".join(exc.fields) or "the request"
            return Ending(
                J.FAILED,
                message=f"the orchestrator refused it ({fields}); nothing was charged",
                detail=str(exc),
                unavailable_model=job.model if refused_as_gone(job.step, exc) else None,
            )
        except (Unauthorized, Forbidden, Redirected, NotFound) as exc:
            # A submit to the workflows collection is "not found" only at a wrong base URL.
            await run.alert(*operator_alert(exc))
            if may_exist or exc.maybe_accepted:
                # An earlier attempt may have made the workflow, which runs and charges: the
                # job waits for the operator's fix and is submitted (found) again after.
                raise FollowRefused(str(exc)) from None
            return Ending(
                J.FAILED,
                message="the bot cannot place orders with the orchestrator right now; nothing "
                "was charged and the operator has been told",
                detail=str(exc),
            )
        except OrchestratorError as exc:
            # Any other refusal (a proxy's 413 for a body with inline sources, a 4xx the API
            # does not list): resubmitting gets the same answer until the job is stuck for good.
            log.warning("job %s: submit refused: %s", job.id, exc)
            if may_exist or exc.maybe_accepted:
                # An earlier attempt may have made the workflow (its answer lost): it may run
                # and charge, so it is asked for again (same externalId) rather than given up.
                return await look_again(run, exc, stop and run.past_grace())
            return Ending(
                J.FAILED,
                message=f"the orchestrator refused it ({exc.status}); nothing was charged",
                detail=str(exc),
            )
        for key in ("auth", "forbidden", "redirect", "endpoint"):
            run.recovered(key)
        await run.submitted(workflow.id, str(workflow.status))
        if run.job.cancel_requested_by is not None and workflow.id:
            await self.cancel(run.job)
        return workflow

    # -- following ----------------------------------------------------------------------------
    async def _follow(self, run: Run, workflow: Workflow | None) -> Ending:
        """Follow the workflow to its end. Past the deadline, ask the orchestrator to stop it
        and settle from what it reports once it has ended (a success is still delivered); if
        it never ends, settle from its last report after a grace period."""
        job = run.job
        workflow_id = job.workflow_id
        assert workflow_id is not None
        attempt = missing = refund_checks = refused = 0
        recheck_in = 0.0
        canceled_sent = expired = gone = reported_since_stop = refused_since_stop = False
        while True:
            if workflow is not None:
                if workflow.terminal and refund_checks < REFUND_CHECKS and workflow.awaits_refund():
                    refund_checks += 1
                    recheck_in = min(self.retry_cap, REFUND_WAIT * refund_checks)
                elif workflow.terminal:
                    # Stopped for the deadline: expired, not canceled. A block or a failure
                    # of its own (learned late, after downtime) stays what it was: a block
                    # goes to the moderators with its charge.
                    late = expired and workflow.status == WorkflowStatus.CANCELED
                    if (unfetchable := refused_blobs(self.client, workflow)) is not None:
                        await run.alert(BLOB_HOST_ALERT, unfetchable)
                    if gone:  # no worker runs its model: stopped, and the model switched off
                        return ending_of(workflow, forced=J.FAILED, gone=job.model)
                    return ending_of(workflow, forced=J.EXPIRED if late else None)
                else:
                    if not gone and unsupported(workflow):
                        gone = True
                        log.warning("job %s: no worker supports %s; stopping it", job.id, job.model)
                        await self.cancel(job)
                    await self._observe(run, workflow)
            job = await run.refresh()
            if job.cancel_requested_by is not None and not canceled_sent:
                canceled_sent = True
                await self.cancel(job)
            if run.past_deadline() and not expired:
                expired = True
                await self.cancel(job)
            # Settled from its last report only when that report came after the stop was asked
            # (or every read since was refused: nothing better will come) and the workflow
            # still runs: an earlier one may predate a refund of the cancel, and an ended one
            # waits for a late refund like any other.
            running = workflow is not None and not workflow.terminal
            last_word = reported_since_stop or refused_since_stop
            if expired and last_word and running and run.past_grace():
                assert workflow is not None
                log.error(
                    "job %s: workflow %s never ended; settling from its last report",
                    job.id,
                    workflow_id,
                )
                return ending_of(workflow, forced=J.EXPIRED)
            delay, wait = self.policy.next_request(attempt)
            if expired:
                delay, wait = min(delay, self.retry_cap), min(wait, 10)
            if recheck_in:
                delay, wait, recheck_in = recheck_in, 0, 0.0
            if delay:
                await run.sleep(delay)
            attempt += 1
            try:
                workflow = await self.client.get(workflow_id, wait=wait)
                reported_since_stop = expired
            except NotFound:
                missing += 1
                if missing < NOT_FOUND_CONFIRMATIONS:
                    # Once may be a passing glitch (a replica behind): ask again before
                    # giving up a workflow that may still run, and charge.
                    log.warning(
                        "job %s: workflow %s not found upstream; asking again", job.id, workflow_id
                    )
                    workflow = None
                    await run.sleep(min(self.retry_cap, 2.0**missing))
                    continue
                await self._confirm_gone(run)
                # The orchestrator lost it: nothing to charge, nothing to deliver.
                log.error("job %s: workflow %s is gone upstream", job.id, workflow_id)
                return ending_of(Workflow(id=workflow_id, status="failed"))
            except (Unauthorized, Forbidden, Redirected) as exc:
                # The token was revoked or rotated (or the base URL now redirects) while the job
                # ran: the operator's to fix; the job waits (its workflow runs on upstream) and
                # is followed again after.
                await run.alert(*operator_alert(exc))
                raise FollowRefused(str(exc)) from None
            except Unavailable as exc:
                if workflow is None and expired and run.past_grace():
                    await run.alert("unreadable", unreadable(job, workflow_id, exc))
                raise
            except OrchestratorError as exc:
                # A refusal the API does not list (a WAF's 400, a 410): the workflow runs on
                # upstream, so it is asked again, with the last report kept: past the deadline
                # and its grace the job is settled from that, like a workflow that never ends.
                refused += 1
                unsettleable = workflow is None and expired and run.past_grace()
                wait_s = self.retry_cap
                if unsettleable:  # only the operator can help now: no need to ask as often
                    wait_s = min(MAX_REFUSED_WAIT, self.retry_cap * 2 ** min(refused - 1, 20))
                log.warning(
                    "job %s: reading workflow %s refused: %s; asking again in %.2fs",
                    job.id,
                    workflow_id,
                    exc,
                    wait_s,
                )
                refused_since_stop = refused_since_stop or expired
                if unsettleable:
                    # No report to settle from: the workflow may have charged, so the hold
                    # stays until it can be read, and only the operator can look into it.
                    await run.alert("unreadable", unreadable(job, workflow_id, exc))
                await run.sleep(wait_s)
                continue
            missing = refused = 0
            # A read proves the token and the URL, not that the account may place orders (a
            # 403 for lack of Buzz): that alert is cleared only by a submit that works.
            for key in ("auth", "redirect"):
                run.recovered(key)

    async def _confirm_gone(self, run: Run) -> None:
        """Before a workflow that answers 404 is taken as gone (ended uncharged): the API must
        be at the base URL, or every read would be 404 while the workflow runs and charges.
        Raises (the job waits, its hold kept) unless the API answers."""
        try:
            if await self.client.api_answers():
                return
            problem: OrchestratorError = NotFound("no API at the base URL")
        except Unavailable:
            raise
        except OrchestratorError as exc:
            problem = exc
        if isinstance(problem, (NotFound, Unauthorized, Forbidden, Redirected)):
            await run.alert(*operator_alert(problem))
        raise FollowRefused(f"not taken as gone: {problem}")

    async def _observe(self, run: Run, workflow: Workflow) -> None:
        """Record progress (only what changed)."""
        job = run.job
        status, position = str(workflow.status), workflow.queue_position()
        if job.status is J.RUNNING and (status, position) == (
            job.workflow_status,
            job.queue_position,
        ):
            return
        started = status == WorkflowStatus.PROCESSING
        await run.progress(status, position, started=started, fraction=workflow.progress())


def unreadable(job: JobRecord, workflow_id: str, refusal: OrchestratorError) -> str:
    return (
        f"job {job.id} is past its deadline and no read of its workflow {workflow_id} "
        f"succeeds ({refusal}): its Buzz stays held until the workflow can be read; check it "
        "on the orchestrator (the log's warnings name any other job in this state)"
    )
