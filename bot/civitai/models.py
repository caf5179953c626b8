"""Typed views of the orchestrator's workflow JSON. Unknown fields are ignored (the API grows)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from bot.store.ledger_records import MAX_CHARGE


def _utc(value: datetime) -> datetime:
    # The schema's date-times carry a zone; one without is taken as UTC (compared with the
    # bot's aware clock it raised TypeError).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Instant = Annotated[datetime, AfterValidator(_utc)]


class WorkflowStatus(StrEnum):
    UNASSIGNED = "unassigned"
    PREPARING = "preparing"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"


TERMINAL = frozenset(
    {
        WorkflowStatus.SUCCEEDED,
        WorkflowStatus.FAILED,
        WorkflowStatus.EXPIRED,
        WorkflowStatus.CANCELED,
    }
)
BLOCKED = "blocked"
_View = TypeVar("_View", bound="BaseModel")


class _Api(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)


class QueuePosition(_Api):
    support: str | None = None
    preceding_jobs: int | None = None
    start_at: Instant | None = None
    complete_at: Instant | None = None


class Job(_Api):
    id: str
    # A status outside the schema's list is kept as text rather than failing the whole read.
    status: WorkflowStatus | str = WorkflowStatus.UNASSIGNED
    started_at: Instant | None = None
    completed_at: Instant | None = None
    queue_position: QueuePosition | None = None
    cost: float = 0
    estimated_progress_rate: float | None = None
    # Not in the schema's WorkflowStepJob, but the orchestrator reports blocked jobs this way.
    reason: str | None = None
    blocked_reason: str | None = None


class ImageBlob(_Api):
    id: str
    type: str = "image"
    available: bool = False
    url: str | None = None
    url_expires_at: Instant | None = None
    width: int | None = None
    height: int | None = None
    blocked_reason: str | None = None
    nsfw_level: str | None = None


class ImageGenOutput(_Api):
    images: list[ImageBlob] = Field(default_factory=list)
    errors: list[str] | None = None


class ImageUpscalerOutput(_Api):
    """imageUpscaler's output: exactly one blob, under `blob`."""

    blob: ImageBlob | None = None


class ImageBackgroundRemovalOutput(_Api):
    """imageBackgroundRemoval's output: the cut-out, under `image`."""

    image: ImageBlob | None = None


class PromptIssue(_Api):
    description: str = ""
    severity: str | None = None


class PromptEnhancementOutput(_Api):
    issues: list[PromptIssue] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list)
    enhanced_prompt: str = ""
    enhanced_negative_prompt: str | None = None


class XGuardLabelResult(_Api):
    label: str
    action: str = ""
    threshold: float = 0
    score: float = 0
    triggered: bool = False
    top_token: str = ""
    field: str = ""
    model_reason: str = ""
    error: str | None = None


class XGuardModerationOutput(_Api):
    results: list[XGuardLabelResult] = Field(default_factory=list)
    blocked: bool = False
    triggered_labels: list[str] = Field(default_factory=list)

    def scores(self) -> dict[str, float]:
        return {r.label: r.score for r in self.results}


StepOutput = (
    ImageGenOutput
    | ImageUpscalerOutput
    | ImageBackgroundRemovalOutput
    | PromptEnhancementOutput
    | XGuardModerationOutput
)
# The typed view of each step type's output, by the step's `$type`.
STEP_OUTPUTS: dict[str, type[StepOutput]] = {
    "imageGen": ImageGenOutput,
    "imageUpscaler": ImageUpscalerOutput,
    "imageBackgroundRemoval": ImageBackgroundRemovalOutput,
    "promptEnhancement": PromptEnhancementOutput,
    "xGuardModeration": XGuardModerationOutput,
}


class Step(_Api):
    type: str = Field("imageGen", alias="$type")
    name: str = "0"
    status: WorkflowStatus | str = WorkflowStatus.UNASSIGNED
    jobs: list[Job] | None = None
    # Read as imageGen's shape whatever the step (kept for existing readers); typed_output()
    # gives the shape of the step's own type.
    output: ImageGenOutput | None = None
    started_at: Instant | None = None
    completed_at: Instant | None = None
    estimated_progress_rate: float | None = None
    _raw_output: dict[str, Any] | None = PrivateAttr(default=None)
    _typed_output: StepOutput | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw_output(cls, data: Any, handler: Any) -> Step:
        step: Step = handler(data)
        if isinstance(data, dict) and isinstance(data.get("output"), dict):
            step._raw_output = data["output"]
            view = STEP_OUTPUTS.get(step.type)
            if view is not None:
                # Read with the workflow, not later: an output of the wrong shape makes the
                # answer unreadable (retried), instead of failing wherever it is first used.
                try:
                    step._typed_output = view.model_validate(step._raw_output)
                except ValidationError as exc:
                    raise ValueError(f"a {step.type} step's output: {exc}") from None
        return step

    def typed_output(self) -> StepOutput | None:
        """The output as its step type's view (None while there is none, or for a type this
        module has no view of)."""
        return self._typed_output

    def images(self) -> list[ImageBlob]:
        """Every image this step produced: imageGen's list, an upscale, a cut-out."""
        found = list(self.output.images) if self.output else []
        typed = self.typed_output()
        if isinstance(typed, ImageUpscalerOutput) and typed.blob is not None:
            found.append(typed.blob)
        elif isinstance(typed, ImageBackgroundRemovalOutput) and typed.image is not None:
            found.append(typed.image)
        return found


class TransactionInfo(_Api):
    type: str
    # The schema's minimum: a negative amount would turn a debit into a credit (or back), so
    # an answer with one is malformed (retried), never settled from.
    amount: int = Field(ge=0)
    id: str | None = None
    account_type: str | None = None


class Transactions(_Api):
    items: list[TransactionInfo] = Field(default_factory=list, alias="list")
    insufficient_buzz: bool | None = None


class CostTips(_Api):
    civitai: int = 0
    creators: int = 0


class Cost(_Api):
    base: int = 0
    total: int = 0
    tips: CostTips | None = None
    factors: dict[str, float] | None = None
    fixed: dict[str, int] | None = None


class Workflow(_Api):
    id: str | None = None
    status: WorkflowStatus | str = WorkflowStatus.UNASSIGNED
    created_at: Instant | None = None
    started_at: Instant | None = None
    completed_at: Instant | None = None
    steps: list[Step] = Field(default_factory=list)
    cost: Cost | None = None
    transactions: Transactions | None = None
    external_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    nsfw_level: str | None = None
    allow_mature_content: bool | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def charged(self) -> int:
        """What the orchestrator really charged (DESIGN.md "The Buzz ledger").

        Σ debits − Σ credits of the transactions when there are any (a refunded block nets to
        0); otherwise cost.total for a success and 0 for anything else.
        """
        items = self.transactions.items if self.transactions else []
        if items:
            debits = sum(t.amount for t in items if t.type == "debit")
            credits = sum(t.amount for t in items if t.type == "credit")
            return min(max(0, debits - credits), MAX_CHARGE)
        if self.status == WorkflowStatus.SUCCEEDED and self.cost is not None:
            return min(max(0, self.cost.total), MAX_CHARGE)
        return 0

    def awaits_refund(self) -> bool:
        """Failed or expired, a charge standing and no credit yet: the kind of ending the
        orchestrator refunds, perhaps not at once. (A block it keeps charging goes to the
        moderators with its charge at once: they may refund it.)"""
        if self.status in (WorkflowStatus.SUCCEEDED, WorkflowStatus.CANCELED):
            return False
        if self.blocked():
            return False
        items = self.transactions.items if self.transactions else []
        return self.charged() > 0 and not any(t.type == "credit" for t in items)

    def jobs(self) -> list[Job]:
        return [job for step in self.steps for job in (step.jobs or [])]

    def images(self) -> list[ImageBlob]:
        """Output images of every step: imageGen's, an upscale's blob, a cut-out's image."""
        return [img for step in self.steps for img in step.images()]

    def enhancement(self) -> PromptEnhancementOutput | None:
        """The first promptEnhancement step's output, once it has one."""
        return self._first_output(PromptEnhancementOutput)

    def moderation(self) -> XGuardModerationOutput | None:
        """The first xGuardModeration step's output, once it has one."""
        return self._first_output(XGuardModerationOutput)

    def _first_output(self, view: type[_View]) -> _View | None:
        for step in self.steps:
            typed = step.typed_output()
            if isinstance(typed, view):
                return typed
        return None

    def output_errors(self) -> list[str]:
        return [e for step in self.steps if step.output for e in (step.output.errors or [])]

    def blocked(self) -> bool:
        """Blocked by a content filter: a job's reason, a blob's blockedReason or output errors."""
        if any((job.reason or "").lower() == BLOCKED or job.blocked_reason for job in self.jobs()):
            return True
        if any(img.blocked_reason for img in self.images()):
            return True
        return any(BLOCKED in err.lower() for err in self.output_errors())

    def queue_position(self) -> int | None:
        for job in self.jobs():
            if job.queue_position and job.queue_position.preceding_jobs is not None:
                return job.queue_position.preceding_jobs
        return None

    def progress(self) -> float | None:
        for step in self.steps:
            if step.estimated_progress_rate is not None:
                return step.estimated_progress_rate
        return None


class CreatedWorkflow(Workflow):
    """A submit's answer: the workflow it created, which has an id. Every field of Workflow is
    optional, so without this any JSON object (a gateway's `{}`) would read as one."""

    id: str


class WorkflowPage(_Api):
    """QueryWorkflows' answer: a page of workflows (the newest first)."""

    items: list[CreatedWorkflow] = Field(default_factory=list)
    next: str | None = None
