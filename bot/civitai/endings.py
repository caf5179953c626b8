"""How a job ends: from its workflow's end (its status, what it cost, what to deliver or review),
or without the orchestrator saying whether its workflow exists."""

from __future__ import annotations

import logging

from bot.civitai.errors import OrchestratorError, Unavailable
from bot.civitai.models import PromptEnhancementOutput, Workflow, WorkflowStatus
from bot.civitai.safety import rating_of, withheld
from bot.engine.lane import Ending, Run
from bot.store.jobs import JobStatus

log = logging.getLogger(__name__)

J = JobStatus


def ending_of(
    workflow: Workflow, *, forced: JobStatus | None = None, gone: str | None = None
) -> Ending:
    """What a job becomes when its workflow ended this way, and what it cost. `gone`: the
    model the orchestrator no longer runs."""
    status = forced or ending_status(workflow)
    images = tuple(
        {"blob_id": img.id, "width": img.width, "height": img.height} for img in workflow.images()
    )
    enhanced = enhancement_of(workflow) if status is J.DELIVERING else None
    return Ending(
        status,
        charged=workflow.charged(),
        upstream_status=str(workflow.status),
        images=images,
        block_reason=block_reason(workflow) if status is J.BLOCKED else None,
        started_at=workflow.started_at,
        output=enhanced.model_dump(by_alias=True) if enhanced is not None else None,
        unavailable_model=gone,
        detail=ending_detail(workflow, status, gone),
        rating=rating_of(workflow),
        withheld=forced is None and withheld(workflow),
        upstream=workflow,
    )


def ending_detail(workflow: Workflow, status: JobStatus, gone: str | None) -> str | None:
    """For operators and moderators: why a job failed when the workflow alone does not say."""
    if gone:
        return "no worker supports the model"
    if status is J.FAILED and workflow.status == WorkflowStatus.SUCCEEDED:
        # Charged for an output with nothing in it to post (no blob, a blank prompt).
        return "the workflow succeeded without a result"
    return None


def ending_status(workflow: Workflow) -> JobStatus:
    if workflow.blocked():
        return J.BLOCKED
    if workflow.status == WorkflowStatus.SUCCEEDED:
        # Images to post, or a text step's result (an enhanced prompt) to show.
        return J.DELIVERING if workflow.images() or enhancement_of(workflow) else J.FAILED
    return {
        WorkflowStatus.EXPIRED.value: J.EXPIRED,
        WorkflowStatus.CANCELED.value: J.CANCELED,
    }.get(str(workflow.status), J.FAILED)


def enhancement_of(workflow: Workflow) -> PromptEnhancementOutput | None:
    """The enhancement's output, when it holds a prompt: a blank enhancedPrompt (the schema
    requires the field, not text in it) offers nothing to choose, so the job fails and its
    charge goes before the moderators."""
    found = workflow.enhancement()
    return found if found is not None and found.enhanced_prompt.strip() else None


def block_reason(workflow: Workflow) -> str:
    for job in workflow.jobs():
        if job.blocked_reason:
            return job.blocked_reason
    for img in workflow.images():
        if img.blocked_reason:
            return f"output image blocked: {img.blocked_reason}"
    errors = workflow.output_errors()
    return errors[0] if errors else "blocked by the content filter"


async def look_again(run: Run, refusal: OrchestratorError, given_up: bool) -> Ending:
    """A submit refused after an attempt that may have made the workflow: raised as passing
    (the next attempt finds it by externalId), or, once `given_up`, ended unconfirmed."""
    if given_up:
        return await unconfirmed(run)
    raise Unavailable(f"{refusal}, and an earlier attempt may have reached it") from refusal


async def unconfirmed(run: Run) -> Ending:
    """A job asked to stop whose workflow the orchestrator never said exists or not. Ended
    uncharged: if the workflow does exist, its charge is not in the ledger, so the operator
    (who alone can look it up) is told."""
    job = run.job
    await run.alert(
        "unconfirmed",
        f"job {job.id} was ended uncharged without the orchestrator saying whether its "
        f"workflow exists; if it does, its charge is not in the ledger: look up externalId "
        f"{job.id} on the orchestrator (others like it are in the log)",
    )
    log.error(
        "job %s: could not learn whether its workflow exists upstream; ending it uncharged "
        "(check the orchestrator for externalId %s)",
        job.id,
        job.id,
    )
    return Ending(J.EXPIRED, message="it could not be confirmed in time")
