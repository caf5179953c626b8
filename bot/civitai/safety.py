"""Safety on the orchestrator: what a workflow says about mature content, and the engine's
SafetyUpstream — AI pre-moderation with an xGuardModeration workflow in prompt mode, ratings
of edit sources from an upload (moderated on the fly), and the release of withheld outputs
(UpdateWorkflow allowMatureContent: true)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import OrchestratorError, operator_alert
from bot.civitai.models import Workflow, WorkflowStatus
from bot.civitai.sources import rated_upload
from bot.engine.lane import OperatorProblem
from bot.engine.safety import PremoderationFailed, PreVerdict, ReleaseFailed
from bot.safety import levels
from bot.store.jobs import JobRecord
from bot.store.source_blobs import SourceBlobStore

log = logging.getLogger(__name__)

# A blob's blockedReason when the workflow may not return it for its rating (not a filter).
MATURE_REASON = "mature"
PREMODERATION_WAIT = 20  # long-poll seconds per request
PREMODERATION_TIMEOUT = 60.0  # the whole check, seconds
# A source's rating is worth a short wait only: the result is rated (and checked) anyway.
RATING_TIMEOUT = 15.0
# Stopping a check that ran out of time, and reading back what it was charged.
STOP_TIMEOUT = 10.0
# A failed check still showing its debit is read again this many times (after 5 s, then 10 s,
# within PREMODERATION_TIMEOUT): the orchestrator may book its refund late, as for jobs.
REFUND_CHECKS = 2
REFUND_WAIT = 5.0


def mature_fields(job: JobRecord) -> dict[str, Any]:
    """The template's allowMatureContent for the job's channel (nothing for older jobs)."""
    if job.max_rating is None:
        return {}
    return {"allowMatureContent": levels.allows_mature(job.max_rating)}


def rating_of(workflow: Workflow) -> str | None:
    """The highest rating of the workflow's outputs (None when none is rated)."""
    found = [b.nsfw_level for b in workflow.images() if b.nsfw_level in levels.LEVELS]
    if workflow.nsfw_level in levels.LEVELS:
        found.append(workflow.nsfw_level)
    return max(found, key=levels.rank) if found else None


def withheld(workflow: Workflow) -> bool:
    """Succeeded, but its outputs kept back only for being mature content the workflow did
    not allow — not blocked by a content filter."""
    if workflow.status != WorkflowStatus.SUCCEEDED:
        return False
    jobs = workflow.jobs()
    if any((job.reason or "").lower() == "blocked" or job.blocked_reason for job in jobs):
        return False
    if any("blocked" in error.lower() for error in workflow.output_errors()):
        return False
    reasons = [img.blocked_reason for img in workflow.images() if img.blocked_reason]
    return bool(reasons) and all(r.lower() == MATURE_REASON for r in reasons)


def moderation_step(prompt: str, labels: tuple[str, ...]) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "mode": "prompt",
        "positivePrompt": prompt,
        "includeReasoning": True,  # the model's reason, for moderators
        "storeFullResponse": False,
    }
    if labels:
        inputs["labels"] = list(labels)
    return {"$type": "xGuardModeration", "input": inputs}


class CivitaiSafety:
    def __init__(
        self,
        client: OrchestratorClient,
        *,
        wait: int = PREMODERATION_WAIT,
        timeout: float = PREMODERATION_TIMEOUT,
        blobs: SourceBlobStore | None = None,
        refund_wait: float = REFUND_WAIT,
    ) -> None:
        self.client, self.wait, self.timeout = client, wait, timeout
        self.refund_wait = refund_wait
        # Where a rated source's upload is remembered, so the job's submit sends its URL.
        self.blobs = blobs

    async def premoderate(self, check_id: str, prompt: str, labels: tuple[str, ...]) -> PreVerdict:
        # Tagged with its externalId: a check whose submit answer was lost is looked up by it.
        template = self.client.template(
            [moderation_step(prompt, labels)], check_id, tags=[check_id]
        )
        workflow: Workflow | None = None
        try:
            async with asyncio.timeout(self.timeout):
                workflow = await self.client.submit(template, wait=self.wait)
                while not workflow.terminal and workflow.id:
                    workflow = await self.client.get(workflow.id, wait=self.wait)
                for check in range(1, REFUND_CHECKS + 1):
                    if not (workflow.id and workflow.awaits_refund()):
                        break
                    await asyncio.sleep(self.refund_wait * check)
                    workflow = await self.client.get(workflow.id)
        except TimeoutError:
            # A check stopped while it runs keeps its debit: the guild's spend must count it.
            # Timed out during the submit, it may have been made all the same.
            cost = await self._stop_check(check_id, workflow, answer_lost=True)
            raise PremoderationFailed(f"no verdict within {self.timeout:.0f}s", cost=cost) from None
        except OrchestratorError as exc:
            # Made, then unreadable: it runs on upstream, so it is stopped and its charge
            # counted like a check that ran out of time.
            cost = await self._stop_check(check_id, workflow, answer_lost=exc.maybe_accepted)
            alert = operator_alert(exc) if isinstance(exc, OperatorProblem) else None
            raise PremoderationFailed(str(exc), cost=cost, alert=alert) from None
        verdict = workflow.moderation()
        cost = workflow.charged()
        if workflow.status != WorkflowStatus.SUCCEEDED or verdict is None:
            raise PremoderationFailed(f"the check ended {workflow.status}", cost=cost)
        triggered = tuple(verdict.triggered_labels) or tuple(
            r.label for r in verdict.results if r.triggered
        )
        unscored = [r.label for r in verdict.results if r.error]
        # Labels it does not know are ignored without a word (the schema): one renamed
        # upstream comes back with no result at all.
        answered = {r.label for r in verdict.results}
        unscored += [label for label in labels if label not in answered]
        if not verdict.results and not labels:
            unscored.append("any label")
        if not triggered and unscored and not verdict.blocked:
            # A label the model could not score checked nothing: not a clean verdict.
            raise PremoderationFailed(f"no verdict for label(s) {', '.join(unscored)}", cost=cost)
        return PreVerdict(
            # `blocked` is the orchestrator's own decision, with or without a label named.
            flagged=bool(triggered) or verdict.blocked,
            labels=triggered,
            scores=verdict.scores(),
            reasons={r.label: r.model_reason for r in verdict.results if r.triggered},
            cost=cost,
        )

    async def _stop_check(
        self, check_id: str, workflow: Workflow | None, *, answer_lost: bool
    ) -> int | None:
        """What a check that gave no verdict was charged, stopping it first; None when that
        cannot be told now (the check stays open and is read again later). A submit whose
        answer was lost may have made it all the same: it is looked up by its tag, never
        submitted again (a second submit of a check that was not made would make one)."""
        if workflow is not None and workflow.id:
            return await self._stop(workflow.id)
        if not answer_lost:
            return 0  # no attempt was acted on: nothing exists upstream
        found = await self._find(check_id)
        if found is None or not found.id:
            # Not (yet) seen upstream: looked for again later, never counted as 0 now.
            return None
        return await self._stop(found.id, found)

    async def _find(self, check_id: str) -> Workflow | None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                return await self.client.find_tagged(check_id)
        except (OrchestratorError, TimeoutError) as exc:
            log.warning("pre-moderation check %s not looked up: %s", check_id, exc or "slow")
            return None

    async def charge_of(self, check_id: str) -> int | None:
        """What a check left open was charged (cut off by a stop, or its charge unread),
        stopping it if it still runs; 0 when the orchestrator has no such check (it was never
        made, so nothing is charged); None when that cannot be told now."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                found = await self.client.find_tagged(check_id)
        except (OrchestratorError, TimeoutError) as exc:
            log.warning("pre-moderation check %s not looked up: %s", check_id, exc or "slow")
            return None
        if found is None or not found.id:
            log.warning(
                "pre-moderation check %s was not found on the orchestrator: it was never made, "
                "nothing is counted for it",
                check_id,
            )
            return 0
        return await self._stop(found.id, found)

    async def _stop(self, workflow_id: str, seen: Workflow | None = None) -> int | None:
        """Cancel a check that has not ended; what the orchestrator charged for it (None when
        it cannot be read back: it is read again later, never counted as 0)."""
        if seen is None or not seen.terminal:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.client.cancel(workflow_id)
            except (OrchestratorError, TimeoutError) as exc:
                why = exc or "slow"
                log.warning("pre-moderation workflow %s not canceled: %s", workflow_id, why)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                now = await self.client.get(workflow_id)
        except (OrchestratorError, TimeoutError) as exc:
            why = exc or "slow"
            log.warning("pre-moderation workflow %s: charge unknown for now: %s", workflow_id, why)
            return None
        if not now.terminal:  # not stopped: what it has charged so far may still change
            log.warning("pre-moderation workflow %s still runs: charge read later", workflow_id)
            return None
        return now.charged()

    async def rate_source(self, data: bytes, mime: str) -> str | None:
        try:
            async with asyncio.timeout(RATING_TIMEOUT):
                if self.blobs is not None:
                    rating = await rated_upload(self.client, self.blobs, data, mime)
                else:
                    rating = (await self.client.upload_blob(data, mime)).nsfw_level
        except (OrchestratorError, TimeoutError) as exc:
            why = str(exc) or "no answer in time"
            log.warning("an edit source could not be rated (%s); checking the result only", why)
            return None
        return rating if rating in levels.LEVELS else None

    async def unlock(self, job: JobRecord) -> None:
        if not job.workflow_id:
            return
        try:
            await self.client.allow_mature(job.workflow_id)
        except OrchestratorError as exc:
            raise ReleaseFailed(f"the orchestrator would not release it ({exc})") from None
