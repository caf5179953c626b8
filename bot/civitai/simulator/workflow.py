"""A simulated workflow's life and money, computed from the clock rather than driven by tasks.

unassigned → scheduled → processing → its outcome. What it charged is a list of transactions:
the debit at submission, a refund credit for the outcomes the API refunds (and a cancel before
processing), and — when mature output is released on a workflow paid in blue or green Buzz —
the swap of that payment to yellow, as the guide's upgradeMode describes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.civitai.models import WorkflowStatus
from bot.civitai.simulator.scripting import MATURE_LEVELS, REFUNDED, Outcome
from bot.civitai.simulator.steps import StepPlan

log = logging.getLogger(__name__)

S = WorkflowStatus
TERMINAL = {S.SUCCEEDED, S.FAILED, S.EXPIRED, S.CANCELED}
# The only Buzz that may pay for mature content.
MATURE_ACCOUNT = "yellow"


@dataclass
class SimStep:
    index: int
    type: str
    name: str
    # The step as submitted (its input is echoed back as it came).
    template: dict[str, Any]
    plan: StepPlan
    blob_ids: list[str]


@dataclass
class SimWorkflow:
    id: str
    external_id: str | None
    template: dict[str, Any]
    steps: list[SimStep]
    price: int
    outcome: Outcome
    created: datetime
    t0: float
    t_scheduled: float
    t_processing: float
    t_done: float
    # The Buzz account that pays: the first allowed currency, else yellow.
    account: str = MATURE_ACCOUNT
    # The template's allowMatureContent (None: decided by the account, as the guide says).
    allow_mature: bool | None = None
    upgrade_mode: str = "manual"
    # A scripted rating for every output blob (else each blob inherits its source's, or pg).
    rating: str | None = None
    canceled_at: float | None = None
    canceled_phase: WorkflowStatus | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # No worker supports its model: it waits in the queue (support "unsupported") for ever.
    unsupported: bool = False

    def status(self, now: float) -> WorkflowStatus:
        if self.canceled_at is not None and now >= self.canceled_at:
            return S.CANCELED
        if now < self.t_scheduled:
            return S.UNASSIGNED
        if now < self.t_processing or self.unsupported:
            return S.SCHEDULED
        if now < self.t_done or self.outcome.kind == "never":
            return S.PROCESSING
        if self.outcome.kind in ("succeed", "blob_blocked"):
            return S.SUCCEEDED
        if self.outcome.kind == "expire":
            return S.EXPIRED
        return S.FAILED

    def notify(self) -> None:
        """Wake every long-poll waiting on this workflow (each waits on the event it saw)."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def finished_at(self) -> float:
        if self.canceled_at is not None:
            return self.canceled_at
        return self.t_done

    # -- ratings -----------------------------------------------------------------------------
    def blob_rating(self, step: SimStep, index: int) -> str:
        return self.rating or step.plan.blobs[index].nsfw_level or "pg"

    def has_mature_output(self) -> bool:
        return any(
            self.blob_rating(step, i) in MATURE_LEVELS
            for step in self.steps
            for i in range(len(step.plan.blobs))
        )

    def mature_allowed(self) -> bool:
        """May mature blobs be returned? allowMatureContent when set (by the template or a later
        update); unset, the guide's rule: yes if yellow Buzz paid, or upgradeMode automatic."""
        if self.allow_mature is not None:
            return self.allow_mature
        return self.account == MATURE_ACCOUNT or self.upgrade_mode == "automatic"

    def blob_state(self, step: SimStep, index: int, now: float) -> str:
        """ok; pending (not succeeded); blocked (by the outcome); restricted (mature output the
        workflow may not return: the schema's allowMatureContent false)."""
        if self.status(now) != S.SUCCEEDED:
            return "pending"
        if self.outcome.kind == "blob_blocked":
            return "blocked"
        if self.blob_rating(step, index) in MATURE_LEVELS and not self.mature_allowed():
            return "restricted"
        return "ok"

    # -- money -------------------------------------------------------------------------------
    def transactions(self, now: float) -> list[tuple[str, int, str]]:
        """(type, amount, account) in the order they happened."""
        debit = self.price if self.outcome.charge is None else self.outcome.charge
        status = self.status(now)
        refunded = (status == S.CANCELED and self.canceled_phase != S.PROCESSING) or (
            status in TERMINAL and status != S.CANCELED and self.outcome.kind in REFUNDED
        )
        if refunded and now < self.finished_at() + self.outcome.refund_delay:
            refunded = False  # not booked yet
        items = [("debit", debit, self.account)]
        if refunded:
            items.append(("credit", debit, self.account))
        elif self._upgraded(status):
            items += [("credit", debit, self.account), ("debit", debit, MATURE_ACCOUNT)]
        return items

    def net_charge(self, now: float) -> int:
        return sum(
            amount if kind == "debit" else -amount for kind, amount, _ in self.transactions(now)
        )

    def _upgraded(self, status: WorkflowStatus) -> bool:
        return (
            status == S.SUCCEEDED
            and self.account != MATURE_ACCOUNT
            and self.has_mature_output()
            and self.mature_allowed()
        )
