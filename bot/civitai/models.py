"""Typed views of the orchestrator's workflow JSON. Unknown fields are ignored (the API grows)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


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


class _Api(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)


class QueuePosition(_Api):
    support: str | None = None
    preceding_jobs: int | None = None
    start_at: datetime | None = None
    complete_at: datetime | None = None


class Job(_Api):
    id: str
    # A status outside the schema's list is kept as text rather than failing the whole read.
    status: WorkflowStatus | str = WorkflowStatus.UNASSIGNED
    started_at: datetime | None = None
    completed_at: datetime | None = None
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
    url_expires_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    blocked_reason: str | None = None
    nsfw_level: str | None = None


class ImageGenOutput(_Api):
    images: list[ImageBlob] = Field(default_factory=list)
    errors: list[str] | None = None


class Step(_Api):
    type: str = Field("imageGen", alias="$type")
    name: str = "0"
    status: WorkflowStatus | str = WorkflowStatus.UNASSIGNED
    jobs: list[Job] | None = None
    output: ImageGenOutput | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    estimated_progress_rate: float | None = None


class TransactionInfo(_Api):
    type: str
    amount: int
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
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    steps: list[Step] = Field(default_factory=list)
    cost: Cost | None = None
    transactions: Transactions | None = None
    external_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

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
            return max(0, debits - credits)
        if self.status == WorkflowStatus.SUCCEEDED and self.cost is not None:
            return self.cost.total
        return 0

    def jobs(self) -> list[Job]:
        return [job for step in self.steps for job in (step.jobs or [])]

    def images(self) -> list[ImageBlob]:
        return [img for step in self.steps if step.output for img in step.output.images]

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
