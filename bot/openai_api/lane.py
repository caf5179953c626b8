"""OpenAI's Images API (or any OpenAI-compatible endpoint) as a lane.

A job is one call: `POST images/generations` (JSON) or `images/edits` (multipart), streamed, so
each partial image goes to the member's status message as it arrives (Run.preview). The call
cannot be resumed or looked up afterwards, so:
- its images come in-band: they travel in the Ending and are stored with the settlement;
- the member pays the quoted price (per image delivered) only on success; a block, a refusal,
  a fault, a cancel or a timeout charges nothing;
- a call is marked in flight (Run.mark_attempt) until it ends; a job found marked at start
  lost its call with the old process: the loss is written to the audit log and the job is
  called again, once — lost twice, it ends failed, uncharged.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.catalog.errors import CatalogError
from bot.catalog.names import Operation
from bot.catalog.request import RequestOptions
from bot.engine.lane import Ending, Run, UpstreamUnavailable
from bot.engine.requests import JobRequest
from bot.media.decode import check_decodes, sniff_mime
from bot.media.pool import ImagePool
from bot.openai_api.catalog import model_spec
from bot.openai_api.client import OpenAIImagesClient
from bot.openai_api.errors import (
    AuthFailed,
    BadResponse,
    Blocked,
    InvalidRequest,
    ModelUnavailable,
    OpenAIError,
    OperatorProblem,
    QuotaExhausted,
    Unavailable,
)
from bot.openai_api.identity import user_hash
from bot.openai_api.job_step import OpenAIJob, Step
from bot.openai_api.request import build_openai_request
from bot.openai_api.results import ImagesResult, PartialImage
from bot.openai_api.service import OpenAIService
from bot.openai_api.switched_away import ANOTHER_SERVICE, StoredResults
from bot.safety.levels import allows_mature, below_pg13
from bot.store import audit
from bot.store.db import Database, StoreBusy, iso, store_busy
from bot.store.jobs import JobRecord, JobStatus, JobStore, SourceImage
from bot.store.results import StoredResult

log = logging.getLogger(__name__)

J = JobStatus
LOST = "upstream.call_lost"
# How often a running call looks for a cancel or the deadline (a cancel wakes it at once).
WATCH_EVERY = 5.0
# Rounds of the client's own retries before the job fails (the engine waits between rounds).
MAX_ROUNDS = 5
OUTPUT_LOST = "openai-output-lost"
OPERATOR_MESSAGE = (
    "the bot cannot use its image service right now; nothing was charged and the operator "
    "has been told"
)


class OpenAILane(StoredResults):
    name = "openai"
    # A call cut short cannot be looked up: a stop lets calls under way finish first.
    resumable = False
    # Partial images go to the status message (Run.preview) while the call streams.
    streams_previews = True

    def __init__(
        self,
        service: OpenAIService,
        db: Database,
        jobs: JobStore,
        *,
        clock: Callable[[], datetime],
        images: ImagePool,
        max_rounds: int = MAX_ROUNDS,
        max_pixels: int = 40_000_000,
    ) -> None:
        self.service, self.db, self.jobs, self.clock = service, db, jobs, clock
        self.max_rounds = max_rounds
        # A result larger than this is not posted (decoding it to fit it would not be safe).
        self.max_pixels = max_pixels
        # Decoding shares the bot's bounded image pool with intake and fitting.
        self.images = images
        # Jobs whose call this process made: a job marked in flight but not in here lost its
        # call with an earlier process.
        self._mine: set[str] = set()
        self._rounds: dict[str, int] = {}
        # Calls per job that streamed output then failed: each was billed upstream, so they
        # are capped across rounds (client.max_output_calls), not only within one.
        self._produced: dict[str, int] = {}

    @property
    def client(self) -> OpenAIImagesClient:
        return self.service.client

    # -- the lane's interface -----------------------------------------------------------------
    def validate(
        self, request: JobRequest, options: RequestOptions, input_size: tuple[int, int] | None
    ) -> OpenAIJob:
        model = request.model.value
        why = self.service.switch.why_off(model)
        if why is not None:
            raise CatalogError.single(
                "model", f"{model} is switched off: the image service no longer serves it"
            )
        who = request.requester
        settings = self.service.lane_settings
        accepted = build_openai_request(
            model,
            request.operation,
            options,
            prices=self.service.prices,
            user=user_hash(self.service.salt, who.guild_id, who.member_id),
            settings=settings,
            input_size=input_size,
        )
        return OpenAIJob(accepted, options.images, options.mask)

    async def run(self, run: Run) -> Ending:
        job = run.job
        ending = await self._run(run)  # UpstreamUnavailable: tried again, still this process's
        self._mine.discard(job.id)
        self._rounds.pop(job.id, None)
        self._produced.pop(job.id, None)
        return ending

    async def cancel(self, job: JobRecord) -> None:
        """Nothing to ask upstream: a running call stops when its job's task sees the cancel."""

    async def whatif(
        self, job_id: str, step: dict[str, Any], sources: tuple[SourceImage, ...] = ()
    ) -> int | None:
        return None  # the Images API has no price quote: the lane's table is the price

    # -- one call -----------------------------------------------------------------------------
    async def _run(self, run: Run) -> Ending:
        job = run.job
        try:
            step = Step.of(job.step)
        except (ValueError, KeyError) as exc:
            # Admitted for the other lane before the operator switched BOT_PROVIDER.
            return Ending(
                J.FAILED,
                message=ANOTHER_SERVICE,
                detail=str(exc),
            )
        if job.submit_attempted_at is not None and job.id not in self._mine:
            # The call was in flight when the bot stopped: it is gone, and cannot be resumed.
            earlier = await self._lost_at_restart(job)
            await self._record_lost(job, "restart", "the bot stopped while the call ran")
            if earlier:
                return Ending(
                    J.FAILED,
                    message="the image service call was interrupted twice; nothing was charged",
                    detail="lost at two restarts",
                )
        if job.cancel_requested_by is not None:
            return Ending(J.CANCELED, message="canceled; nothing was charged")
        if run.past_deadline():
            return Ending(J.EXPIRED, message="it could not be started in time; nothing was charged")
        self._mine.add(job.id)
        why = self.service.switch.why_off(step.model)
        if why is not None:  # admitted before the endpoint said it no longer serves it
            return Ending(
                J.FAILED,
                message=f"{step.model} is no longer available here; nothing was charged",
                detail=why,
            )
        await run.mark_attempt()
        if run.job.status is J.QUEUED:
            await run.submitted(None, "processing")
        else:
            await run.progress("processing", started=True)
        try:
            outcome = await self._race(run, self._call(run, step))
        except Unavailable as exc:
            return await self._unavailable(run, exc)
        except OpenAIError as exc:
            return await self._refused(run, step, exc)
        if isinstance(outcome, JobStatus):
            await self._record_lost(run.job, outcome.value, "stopped while the call ran")
            words = "canceled" if outcome is J.CANCELED else "it did not finish in time"
            return Ending(outcome, message=f"{words}; nothing was charged")
        for key in ("openai-auth", "openai-quota", "openai-endpoint", OUTPUT_LOST):
            run.recovered(key)
        return await self._delivered(run.job, step, outcome)

    async def _call(self, run: Run, step: Step) -> ImagesResult:
        async def on_partial(partial: PartialImage) -> None:
            await run.preview(partial.data, sniff_mime(partial.data))

        # `moderation: low` only where the job's channel allows mature content (its level,
        # decided and stored at admission) and only when an admin enabled it. Only the GPT
        # image models' generations take the field: images/edits and dall-e refuse it.
        fields = {k: v for k, v in step.fields.items() if k != "moderation"}
        moderation = self.service.lane_settings.moderation
        if self.service.moderation_low_allowed and allows_mature(run.job.max_rating):
            moderation = "low"
        spec = model_spec(step.model)
        takes_it = step.operation is Operation.CREATE and spec is not None and spec.gpt
        if moderation is not None and takes_it:
            fields["moderation"] = moderation
        if "partial_images" in fields and below_pg13(run.job.max_rating):
            # Nothing rates or moderates previews: a channel below PG-13 is shown none.
            fields["partial_images"] = 0
        step = replace(step, fields=fields)
        left = max(1, self.client.max_output_calls - self._produced.get(run.job.id, 0))

        async def on_lost(why: str) -> None:  # a try that ran, made again: billed twice
            await self._record_lost(run.job, "retried", why)

        if step.operation is Operation.EDIT:
            sources = await self.jobs.sources(run.job.id)
            images = [s for s in sources if s.role == "image"]
            mask = next((s for s in sources if s.role == "mask"), None)
            return await self.client.edit(
                step.fields,
                images,
                mask,
                on_partial=on_partial,
                image_field=step.image_field,
                output_calls=left,
                on_lost=on_lost,
            )
        return await self.client.generate(
            step.fields, on_partial=on_partial, output_calls=left, on_lost=on_lost
        )

    async def _race(
        self, run: Run, call: Coroutine[Any, Any, ImagesResult]
    ) -> ImagesResult | JobStatus:
        """The call's result, or CANCELED/EXPIRED when the member cancels or the deadline
        passes first (the call is then dropped: OpenAI has nothing to cancel)."""
        calling = asyncio.ensure_future(call)
        watching = asyncio.ensure_future(self._watch(run))
        try:
            await asyncio.wait({calling, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (calling, watching):
                if not task.done():
                    task.cancel()
            await asyncio.gather(calling, watching, return_exceptions=True)
        if calling.done() and not calling.cancelled():
            return calling.result()  # raises the call's error
        return watching.result()

    async def _watch(self, run: Run) -> JobStatus:
        while True:
            await run.sleep(WATCH_EVERY)  # a cancel wakes it at once
            try:
                job = await run.refresh()
            except sqlite3.OperationalError as exc:
                # A read refused for now (a locked or failing database) is no cancel: dropping
                # the call would pay for it upstream and make it again. Looked at next time.
                # Any other error is a bug: its traceback, and the call goes on all the same.
                if store_busy(exc) is None:
                    log.exception("job %s: could not read the job", run.job.id)
                else:
                    log.warning("job %s: could not read the job (%s)", run.job.id, exc)
                job = run.job
            if job.cancel_requested_by is not None:
                return J.CANCELED
            if run.past_deadline():
                return J.EXPIRED

    # -- endings ------------------------------------------------------------------------------
    async def _delivered(self, job: JobRecord, step: Step, result: ImagesResult) -> Ending:
        for why in result.unusable:  # left out by the client: made upstream, not charged here
            await self._record_lost(job, "unusable", why)
        stored: list[StoredResult] = []
        for index, data in enumerate(result.images):
            try:
                # Decoded whole: a cut-short JPEG passes a structure check, and would be
                # posted broken and charged.
                found = await self.images.run(check_decodes, data, self.max_pixels)
            except ValueError as exc:
                # That image is not charged; the others are still delivered.
                await self._record_lost(job, "unusable", f"image {index + 1}: {exc}")
                log.warning("job %s: image %d is unusable (%s)", job.id, index + 1, exc)
                continue
            mime, width, height = found
            stored.append(StoredResult(len(stored), mime, width, height, data))
        if not stored:
            return Ending(
                J.FAILED,
                message="the image service's answer could not be used; nothing was charged",
                detail=f"none of the {len(result.images)} image(s) could be used",
            )
        # The quoted price is per image: a stream that ended short is charged for what came.
        unit = job.estimate // max(1, step.n)
        charged = job.estimate if len(stored) >= step.n else unit * len(stored)
        if len(stored) < step.n:
            log.warning("job %s: %d of %d images arrived", job.id, len(stored), step.n)
        tokens = (result.usage or {}).get("total_tokens")
        # A compatible server may report it as text or an object: shown only when a number.
        counted = isinstance(tokens, int | float) and not isinstance(tokens, bool) and tokens
        detail = f"{len(stored)} image(s)" + (f", {tokens:,} tokens" if counted else "")
        return Ending(
            J.DELIVERING,
            charged=charged,
            upstream_status="completed",
            images=tuple(
                {"blob_id": f"{job.id}-{r.index + 1}", "width": r.width, "height": r.height}
                for r in stored
            ),
            detail=detail,
            results=tuple(stored),
            usage=result.usage,
        )

    async def _unavailable(self, run: Run, exc: Unavailable) -> Ending:
        job = run.job
        if exc.untold:  # the billed tries made again were recorded as they failed (on_lost)
            await self._record_lost(job, "failed", str(exc))
        await run.clear_attempt()  # nothing is in flight any more
        rounds = self._rounds[job.id] = self._rounds.get(job.id, 0) + 1
        produced = self._produced[job.id] = self._produced.get(job.id, 0) + exc.produced
        if exc.produced and produced >= self.client.max_output_calls:
            # Each of these calls ran, and was billed, upstream: calling again would be
            # paying again for the same request, so the job ends and the operator is told.
            await run.alert(
                OUTPUT_LOST,
                f"the OpenAI lane: {produced} calls for job {job.id} ran upstream (previews "
                f"or an answer lost midway) but brought no image ({exc}); the job failed "
                "uncharged rather than pay again. See "
                "`upstream.call_lost` in the audit log",
            )
            return Ending(
                J.FAILED,
                message="the image service started the image but did not finish it; "
                "nothing was charged",
                detail=str(exc),
            )
        if rounds >= self.max_rounds:
            return Ending(
                J.FAILED,
                message="the image service kept failing; nothing was charged",
                detail=str(exc),
            )
        raise UpstreamUnavailable(str(exc), maybe_accepted=exc.maybe_accepted)

    async def _refused(self, run: Run, step: Step, exc: OpenAIError) -> Ending:
        if exc.streamed_output and not isinstance(exc, BadResponse):  # audited below
            # Refused after previews came: the call ran, and was billed, upstream.
            reason = "blocked" if isinstance(exc, Blocked) else "refused"
            await self._record_lost(run.job, reason, str(exc))
        if isinstance(exc, Blocked):
            return Ending(
                J.BLOCKED,
                upstream_status="blocked",
                block_reason=f"refused by the image service's safety system ({exc.code})",
                detail=str(exc),
            )
        if isinstance(exc, ModelUnavailable):
            model = exc.model or step.model
            await self.service.switch.disable(model, str(exc))
            await run.alert(
                f"openai-model:{model}",
                f"the image service does not serve {model} any more, so it has been switched "
                f"off ({exc}); `python -m bot openai-models --enable {model}` switches it on",
            )
            return Ending(
                J.FAILED,
                message=f"{model} is no longer available from the image service, so it has "
                "been switched off here; nothing was charged",
                detail=str(exc),
            )
        if isinstance(exc, OperatorProblem):
            key = (
                "openai-auth"
                if isinstance(exc, AuthFailed)
                else "openai-quota"
                if isinstance(exc, QuotaExhausted)
                else "openai-endpoint"
            )
            await run.alert(key, f"the OpenAI lane: {exc}")
            return Ending(J.FAILED, message=OPERATOR_MESSAGE, detail=str(exc))
        if isinstance(exc, InvalidRequest):
            what = f" ({exc.param})" if exc.param else ""
            return Ending(
                J.FAILED,
                message=f"the image service refused the request{what}; nothing was charged",
                detail=str(exc),
            )
        if isinstance(exc, BadResponse):
            await self._record_lost(run.job, "unusable", str(exc))
        return Ending(
            J.FAILED,
            message="the image service's answer could not be used; nothing was charged",
            detail=str(exc),
        )

    # -- the audit trail of calls that may have been billed upstream --------------------------
    async def _lost_at_restart(self, job: JobRecord) -> int:
        found = await audit.events(self.db, action=LOST, target=job.id, limit=50)
        return sum(1 for e in found if e.details.get("reason") == "restart")

    async def _record_lost(self, job: JobRecord, reason: str, detail: str) -> None:
        """A call that may have run (and been billed) upstream without the member getting its
        images, for the operator to match against the upstream bill."""
        started = job.submit_attempted_at
        log.warning("job %s: upstream call lost (%s): %s", job.id, reason, detail)
        try:
            await self.db.write(
                audit.record,
                self.clock(),
                LOST,
                guild_id=job.guild_id,
                target=job.id,
                lane=self.name,
                model=job.model,
                reason=reason,
                detail=detail[:300],
                call_started_at=iso(started) if started else None,
            )
        except StoreBusy as exc:
            # Raised on, the engine would run the job again: a paid call made twice. The
            # warning above keeps what the operator needs.
            log.warning("job %s: the lost call not audited (%s)", job.id, exc)
