"""The ledger's records and refusals: accounts, holds, settlements, balances, entries."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from bot.store.periods import describe_moment

MAX_AMOUNT = 10_000_000
# The most a settlement records (the orchestrator's amounts are int32s): a settlement takes any
# of it, the member paying what they can and the guild the rest (an audited loss). A workflow's
# charge is a sum of amounts and may pass it: the lane reports such a charge as this much, so
# the loss sums in reports stay far inside SQLite's integers.
MAX_CHARGE = 2**31 - 1


class LedgerError(Exception):
    pass


@dataclass(frozen=True)
class Allowance:
    amount: int
    period: str
    source: str  # "member override", "role <id>", "guild default", "bot default"
    role_id: int | None = None  # the role whose rule it is, for a "role <id>" source


class InsufficientBuzz(LedgerError):
    def __init__(
        self,
        need: int,
        have: int,
        allowance: Allowance,
        next_refill: datetime | None,
        now: datetime,
    ) -> None:
        self.need, self.have, self.allowance, self.next_refill = need, have, allowance, next_refill
        text = f"this needs {need:,} Buzz; you have {have:,}"
        if next_refill is not None and allowance.amount > 0:
            text += f", refilling to {allowance.amount:,} on {describe_moment(next_refill, now)}"
        super().__init__(text)


class BudgetExhausted(LedgerError):
    def __init__(self, need: int, remaining: int, next_reset: datetime | None, now: datetime):
        self.need, self.remaining, self.next_reset = need, remaining, next_reset
        text = f"the server's Buzz budget is spent: this needs {need:,}, {remaining:,} is left"
        if next_reset is not None:
            text += f" until it resets on {describe_moment(next_reset, now)}"
        super().__init__(text)


class AlreadySettled(LedgerError):
    pass


class InvalidAmount(LedgerError):
    pass


@dataclass(frozen=True)
class Account:
    allowance_balance: int
    grant_balance: int
    last_refill_key: str | None
    refill_level: int = 0

    @property
    def total(self) -> int:
        return self.allowance_balance + self.grant_balance


@dataclass(frozen=True)
class Hold:
    """A job's hold: what was set aside at admission and, once settled, what became of it."""

    id: int
    guild_id: int
    member_id: int
    job_id: str
    amount: int
    from_allowance: int
    from_grant: int
    refill_key: str | None
    captured: int | None
    released: int | None
    extra_charged: int
    loss: int
    refunded: int
    created_at: str
    settled_at: str | None

    @property
    def settled(self) -> bool:
        return self.settled_at is not None

    @property
    def charged(self) -> int:
        """What the member paid for the job (nothing before it is settled)."""
        return (self.captured or 0) + self.extra_charged

    @property
    def refundable(self) -> int:
        """What a moderator may still give back."""
        return self.charged - self.refunded if self.settled else 0

    @classmethod
    def of(cls, row: sqlite3.Row) -> Hold:
        return cls(*(row[name] for name in cls.__dataclass_fields__))


@dataclass(frozen=True)
class Settlement:
    job_id: str
    amount: int
    captured: int
    released: int
    extra_charged: int
    loss: int

    @property
    def charged(self) -> int:
        """What the member paid for this job in the end."""
        return self.captured + self.extra_charged


@dataclass(frozen=True)
class Balance:
    available: int
    allowance_balance: int
    grant_balance: int
    held: int
    allowance: Allowance
    next_refill: datetime | None
    pending_refill: int
    spent_this_period: int


@dataclass(frozen=True)
class Entry:
    id: int
    member_id: int
    kind: str
    amount: int
    delta: int
    job_id: str | None
    actor_id: int | None
    reason: str | None
    created_at: str


@dataclass(frozen=True)
class BudgetState:
    amount: int | None
    period: str | None
    used: int
    next_reset: datetime | None

    @property
    def remaining(self) -> int | None:
        return None if self.amount is None else max(0, self.amount - self.used)


def check_amount(amount: int, *, allow_zero: bool = False, high: int = MAX_AMOUNT) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(amount, int) or isinstance(amount, bool) or not low <= amount <= high:
        raise InvalidAmount(f"amount must be a whole number from {low} to {high:,}")


def entry_of(row: sqlite3.Row) -> Entry:
    return Entry(
        row["id"],
        row["member_id"],
        row["kind"],
        row["amount"],
        row["delta_allowance"] + row["delta_grant"],
        row["job_id"],
        row["actor_id"],
        row["reason"],
        row["created_at"],
    )
