"""How a job ends when its workflow ended: its status, what it cost, what to deliver or review."""

from __future__ import annotations

from bot.civitai.models import PromptEnhancementOutput, Workflow, WorkflowStatus
from bot.civitai.safety import rating_of, withheld
from bot.engine.lane import Ending
from bot.store.jobs import JobStatus

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
        detail="no worker supports the model" if gone else None,
        rating=rating_of(workflow),
        withheld=forced is None and withheld(workflow),
        upstream=workflow,
    )


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
