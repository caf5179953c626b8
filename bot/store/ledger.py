"""The Buzz ledger: per (guild, member) accounts from append-only entries, exact to the Buzz.

Two buckets per account: the allowance (topped up to the member's allowance once per period,
lazily, on first use) and grants (one-off, never expire). Spending takes the allowance first.
Every hold is settled exactly once: capture what the orchestrator charged (allowance first),
release the rest; a charge above the hold is taken from the balance down to zero, never below,
and what is left is recorded as the guild's loss in the audit log.

Methods that change money take the open transaction (`tx`) so that a job's state change and its
ledger entries commit together. Balances never go negative: the code checks, and the schema's
CHECK constraints would abort the transaction if the code were wrong.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.store import audit
from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import row as fetch_row
from bot.store.db import rows as fetch_rows
from bot.store.periods import (
    describe_moment,
    next_period_start,
    period_key,
    period_start,
)

MAX_AMOUNT = 10_000_000


class LedgerError(Exception):
    pass


@dataclass(frozen=True)
class Allowance:
    amount: int
    period: str
    source: str  # "member override", "role <id>", "guild default", "bot default"


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
    id: int
    job_id: str
    guild_id: int
    member_id: int
    amount: int
    from_allowance: int
    from_grant: int


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


def check_amount(amount: int, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(amount, int) or isinstance(amount, bool) or not low <= amount <= MAX_AMOUNT:
        raise InvalidAmount(f"amount must be a whole number from {low} to {MAX_AMOUNT:,}")


class Ledger:
    def __init__(
        self,
        db: Database,
        *,
        default_allowance: int = 0,
        default_period: str = "weekly",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.default = Allowance(default_allowance, default_period, "bot default")
        self.clock = clock

    # -- allowances -------------------------------------------------------------------------
    def set_allowance_in(
        self,
        tx: Conn,
        guild_id: int,
        scope: str,
        target_id: int,
        amount: int,
        period: str,
        actor_id: int | None,
    ) -> None:
        check_amount(amount, allow_zero=True)
        period_key(period, self.clock())  # validates the period name
        now = self.clock()
        tx.execute(
            "INSERT INTO allowances (guild_id, scope, target_id, amount, period, updated_by,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, scope, target_id)"
            " DO UPDATE SET amount = excluded.amount, period = excluded.period,"
            " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            (guild_id, scope, target_id, amount, period, actor_id, iso(now)),
        )
        audit.record(
            tx,
            now,
            "allowance.set",
            guild_id=guild_id,
            actor_id=actor_id,
            target=f"{scope}:{target_id}",
            amount=amount,
            period=period,
        )

    def clear_allowance_in(
        self, tx: Conn, guild_id: int, scope: str, target_id: int, actor_id: int | None
    ) -> bool:
        cursor = tx.execute(
            "DELETE FROM allowances WHERE guild_id = ? AND scope = ? AND target_id = ?",
            (guild_id, scope, target_id),
        )
        if cursor.rowcount:
            audit.record(
                tx,
                self.clock(),
                "allowance.clear",
                guild_id=guild_id,
                actor_id=actor_id,
                target=f"{scope}:{target_id}",
            )
        return bool(cursor.rowcount)

    def allowance_in(
        self, conn: Conn, guild_id: int, member_id: int, roles: Sequence[int] = ()
    ) -> Allowance:
        """Member override, else the highest of the member's role rules, else the guild default."""
        marks = ",".join("?" * len(roles)) or "NULL"
        sql = (
            "SELECT scope, target_id, amount, period FROM allowances WHERE guild_id = ? AND"
            f" ((scope = 'member' AND target_id = ?) OR scope = 'default'"
            f" OR (scope = 'role' AND target_id IN ({marks})))"
        )
        params = (guild_id, member_id, *roles)
        by_scope: dict[str, list[sqlite3.Row]] = {}
        for row in fetch_rows(conn, sql, params):
            by_scope.setdefault(row["scope"], []).append(row)
        if "member" in by_scope:
            row = by_scope["member"][0]
            return Allowance(row["amount"], row["period"], "member override")
        if "role" in by_scope:
            row = max(by_scope["role"], key=lambda r: (r["amount"], -r["target_id"]))
            return Allowance(row["amount"], row["period"], f"role {row['target_id']}")
        if "default" in by_scope:
            row = by_scope["default"][0]
            return Allowance(row["amount"], row["period"], "guild default")
        return self.default

    # -- accounts ---------------------------------------------------------------------------
    def _account(self, tx: Conn, guild_id: int, member_id: int) -> Account:
        tx.execute(
            "INSERT OR IGNORE INTO accounts (guild_id, member_id) VALUES (?, ?)",
            (guild_id, member_id),
        )
        row = fetch_row(
            tx,
            "SELECT allowance_balance, grant_balance, last_refill_key, refill_level FROM accounts"
            " WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        assert row is not None
        return Account(row[0], row[1], row[2], row[3])

    def _entry(
        self,
        tx: Conn,
        guild_id: int,
        member_id: int,
        kind: str,
        amount: int,
        d_allowance: int,
        d_grant: int,
        *,
        hold_id: int | None = None,
        job_id: str | None = None,
        actor_id: int | None = None,
        reason: str | None = None,
        key: str | None = None,
    ) -> None:
        now = iso(self.clock())
        tx.execute(
            "INSERT INTO ledger_entries (guild_id, member_id, kind, amount, delta_allowance,"
            " delta_grant, hold_id, job_id, actor_id, reason, period_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                guild_id,
                member_id,
                kind,
                amount,
                d_allowance,
                d_grant,
                hold_id,
                job_id,
                actor_id,
                reason,
                key,
                now,
            ),
        )
        if d_allowance or d_grant:
            tx.execute(
                "UPDATE accounts SET allowance_balance = allowance_balance + ?,"
                " grant_balance = grant_balance + ? WHERE guild_id = ? AND member_id = ?",
                (d_allowance, d_grant, guild_id, member_id),
            )

    def _expire_old_allowance(
        self, tx: Conn, hold: sqlite3.Row, released_allowance: int, job_id: str
    ) -> None:
        """Allowance held across a refill comes back only up to the allowance: like any unused
        allowance of an earlier period, the rest expired at that refill."""
        guild_id, member_id = hold["guild_id"], hold["member_id"]
        if not released_allowance:
            return
        latest = fetch_row(
            tx,
            "SELECT last_refill_key FROM accounts WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        if latest is None or hold["refill_key"] == latest[0]:
            return  # no refill since the hold: the usual case, one read
        account = self._account(tx, guild_id, member_id)
        # This period's allowance already spoken for by its own running jobs.
        current = fetch_row(
            tx,
            "SELECT COALESCE(SUM(from_allowance), 0) FROM holds WHERE guild_id = ?"
            " AND member_id = ? AND settled_at IS NULL AND refill_key IS ?",
            (guild_id, member_id, account.last_refill_key),
        )
        held_now = int(current[0]) if current else 0
        over = max(0, account.allowance_balance + held_now - account.refill_level)
        expired = min(over, released_allowance)
        if expired:
            self._entry(
                tx,
                guild_id,
                member_id,
                "adjust",
                expired,
                -expired,
                0,
                hold_id=hold["id"],
                job_id=job_id,
                reason="unused allowance of an earlier period expired",
            )

    def refresh_in(
        self, tx: Conn, guild_id: int, member_id: int, roles: Sequence[int] = ()
    ) -> tuple[Account, Allowance]:
        """The lazy refill: once per period, top the allowance bucket up to the allowance.

        Every hold still open at a refill was made in an earlier period (the first use of a
        period refills before it holds), so the top-up ignores them; if one of them is
        released later, its allowance part only comes back up to the allowance (see settle).
        """
        account = self._account(tx, guild_id, member_id)
        rule = self.allowance_in(tx, guild_id, member_id, roles)
        key = period_key(rule.period, self.clock())
        if rule.amount <= 0 or account.last_refill_key == key:
            return account, rule
        # The rule's period can change and change back (an override set then cleared, a role
        # gained or lost): a period already refilled is not refilled again.
        refilled = fetch_row(
            tx,
            "SELECT 1 FROM ledger_entries WHERE guild_id = ? AND member_id = ?"
            " AND kind = 'refill' AND period_key = ?",
            (guild_id, member_id, key),
        )
        top_up = 0 if refilled is not None else max(0, rule.amount - account.allowance_balance)
        if top_up:
            self._entry(
                tx,
                guild_id,
                member_id,
                "refill",
                top_up,
                top_up,
                0,
                reason=f"{rule.period} allowance ({rule.source})",
                key=key,
            )
        tx.execute(
            "UPDATE accounts SET last_refill_key = ?, refill_level = ?"
            " WHERE guild_id = ? AND member_id = ?",
            (key, rule.amount, guild_id, member_id),
        )
        return self._account(tx, guild_id, member_id), rule

    # -- holds and settlement ---------------------------------------------------------------
    def place_hold_in(
        self,
        tx: Conn,
        guild_id: int,
        member_id: int,
        job_id: str,
        amount: int,
        roles: Sequence[int] = (),
    ) -> Hold:
        check_amount(amount)
        account, rule = self.refresh_in(tx, guild_id, member_id, roles)
        if account.total < amount:
            now = self.clock()
            raise InsufficientBuzz(
                amount, account.total, rule, next_period_start(rule.period, now), now
            )
        from_allowance = min(amount, account.allowance_balance)
        from_grant = amount - from_allowance
        cursor = tx.execute(
            "INSERT INTO holds (guild_id, member_id, job_id, amount, from_allowance, from_grant,"
            " refill_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                guild_id,
                member_id,
                job_id,
                amount,
                from_allowance,
                from_grant,
                account.last_refill_key,
                iso(self.clock()),
            ),
        )
        hold_id = int(cursor.lastrowid or 0)
        self._entry(
            tx,
            guild_id,
            member_id,
            "hold",
            amount,
            -from_allowance,
            -from_grant,
            hold_id=hold_id,
            job_id=job_id,
        )
        return Hold(hold_id, job_id, guild_id, member_id, amount, from_allowance, from_grant)

    def hold_in(self, conn: Conn, job_id: str) -> sqlite3.Row | None:
        return fetch_row(conn, "SELECT * FROM holds WHERE job_id = ?", (job_id,))

    async def hold(self, job_id: str) -> sqlite3.Row | None:
        return await self.db.fetchone("SELECT * FROM holds WHERE job_id = ?", (job_id,))

    def settle_in(
        self, tx: Conn, job_id: str, charged: int, *, actor_id: int | None = None
    ) -> Settlement:
        """Capture what was charged (up to the hold), release the rest, collect any excess."""
        check_amount(charged, allow_zero=True)
        hold = self.hold_in(tx, job_id)
        if hold is None:
            raise LedgerError(f"job {job_id} has no hold")
        if hold["settled_at"] is not None:
            raise AlreadySettled(f"the hold of job {job_id} is already settled")
        guild_id, member_id, amount = hold["guild_id"], hold["member_id"], hold["amount"]
        captured = min(charged, amount)
        released = amount - captured
        cap_a = min(captured, hold["from_allowance"])
        rel_a, rel_g = hold["from_allowance"] - cap_a, hold["from_grant"] - (captured - cap_a)
        if captured:
            self._entry(
                tx,
                guild_id,
                member_id,
                "capture",
                captured,
                0,
                0,
                hold_id=hold["id"],
                job_id=job_id,
                actor_id=actor_id,
            )
        if released:
            self._entry(
                tx,
                guild_id,
                member_id,
                "release",
                released,
                rel_a,
                rel_g,
                hold_id=hold["id"],
                job_id=job_id,
                actor_id=actor_id,
            )
            self._expire_old_allowance(tx, hold, rel_a, job_id)
        extra, paid, loss = charged - captured, 0, 0
        if extra:
            account = self._account(tx, guild_id, member_id)
            pay_a = min(extra, account.allowance_balance)
            pay_g = min(extra - pay_a, account.grant_balance)
            paid, loss = pay_a + pay_g, extra - pay_a - pay_g
            if paid:
                self._entry(
                    tx,
                    guild_id,
                    member_id,
                    "capture",
                    paid,
                    -pay_a,
                    -pay_g,
                    hold_id=hold["id"],
                    job_id=job_id,
                    actor_id=actor_id,
                    reason="charged above the hold",
                )
            if loss:
                audit.record(
                    tx,
                    self.clock(),
                    "ledger.guild_loss",
                    guild_id=guild_id,
                    actor_id=actor_id,
                    target=f"member:{member_id}",
                    job_id=job_id,
                    charged=charged,
                    hold=amount,
                    loss=loss,
                )
        cursor = tx.execute(
            "UPDATE holds SET captured = ?, released = ?, extra_charged = ?, loss = ?,"
            " settled_at = ? WHERE id = ? AND settled_at IS NULL",
            (captured, released, paid, loss, iso(self.clock()), hold["id"]),
        )
        if cursor.rowcount != 1:  # the lock makes this unreachable; the check makes it certain
            raise AlreadySettled(f"the hold of job {job_id} is already settled")
        return Settlement(job_id, amount, captured, released, paid, loss)

    def refund_in(
        self,
        tx: Conn,
        job_id: str,
        *,
        actor_id: int | None,
        reason: str,
        amount: int | None = None,
    ) -> int:
        """Give back what a settled job cost (moderators' Refund). Credited as a grant."""
        if amount is not None:
            check_amount(amount)
        hold = self.hold_in(tx, job_id)
        if hold is None or hold["settled_at"] is None:
            raise LedgerError(f"job {job_id} has nothing settled to refund")
        refundable = hold["captured"] + hold["extra_charged"] - hold["refunded"]
        amount = refundable if amount is None else amount
        if amount <= 0 or amount > refundable:
            raise InvalidAmount(f"refundable for job {job_id}: {refundable:,} Buzz")
        self._account(tx, hold["guild_id"], hold["member_id"])
        self._entry(
            tx,
            hold["guild_id"],
            hold["member_id"],
            "refund",
            amount,
            0,
            amount,
            hold_id=hold["id"],
            job_id=job_id,
            actor_id=actor_id,
            reason=reason,
        )
        tx.execute("UPDATE holds SET refunded = refunded + ? WHERE id = ?", (amount, hold["id"]))
        return amount

    # -- grants and takes -------------------------------------------------------------------
    def grant_in(
        self,
        tx: Conn,
        guild_id: int,
        member_id: int,
        amount: int,
        *,
        actor_id: int | None,
        reason: str | None,
        roles: Sequence[int] | None = None,
    ) -> Account:
        """One-off Buzz on top of the allowance. With the member's roles (from Discord), the
        refill due this period is applied first, so the balance reported is the real one."""
        self._admin_opening(tx, guild_id, member_id, amount, roles)
        self._entry(
            tx, guild_id, member_id, "grant", amount, 0, amount, actor_id=actor_id, reason=reason
        )
        return self._admin_closing(tx, "grant", guild_id, member_id, amount, actor_id, reason)

    def take_in(
        self,
        tx: Conn,
        guild_id: int,
        member_id: int,
        amount: int,
        *,
        actor_id: int | None,
        reason: str | None,
        roles: Sequence[int] | None = None,
    ) -> Account:
        """Remove Buzz (grants first). Refused beyond the balance: it never goes negative.
        With the member's roles, the refill due this period counts (as for grant)."""
        account = self._admin_opening(tx, guild_id, member_id, amount, roles)
        if amount > account.total:
            raise InvalidAmount(
                f"cannot take {amount:,} Buzz: the member has {account.total:,} available"
            )
        from_grant = min(amount, account.grant_balance)
        from_allowance = amount - from_grant
        self._entry(
            tx,
            guild_id,
            member_id,
            "adjust",
            amount,
            -from_allowance,
            -from_grant,
            actor_id=actor_id,
            reason=reason,
        )
        return self._admin_closing(tx, "take", guild_id, member_id, amount, actor_id, reason)

    def _admin_opening(
        self, tx: Conn, guild_id: int, member_id: int, amount: int, roles: Sequence[int] | None
    ) -> Account:
        check_amount(amount)
        if roles is not None:
            self.refresh_in(tx, guild_id, member_id, roles)
        return self._account(tx, guild_id, member_id)

    def _admin_closing(
        self,
        tx: Conn,
        action: str,
        guild_id: int,
        member_id: int,
        amount: int,
        actor_id: int | None,
        reason: str | None,
    ) -> Account:
        audit.record(
            tx,
            self.clock(),
            f"ledger.{action}",
            guild_id=guild_id,
            actor_id=actor_id,
            target=f"member:{member_id}",
            amount=amount,
            reason=reason,
        )
        return self._account(tx, guild_id, member_id)

    # -- budget -----------------------------------------------------------------------------
    def budget_in(
        self, conn: Conn, guild_id: int, amount: int | None, period: str | None
    ) -> BudgetState:
        """What all members together spent (or hold) in the guild's budget period."""
        now = self.clock()
        start = period_start(period, now) if period else None
        sql = (
            "SELECT COALESCE(SUM(CASE WHEN settled_at IS NULL THEN amount"
            " ELSE captured + extra_charged - refunded END), 0) FROM holds"
            " WHERE guild_id = ? AND created_at >= ?"
        )
        params = (guild_id, iso(start) if start else "")
        row = fetch_row(conn, sql, params)
        used = int(row[0]) if row else 0
        reset = next_period_start(period, now) if period else None
        return BudgetState(amount, period, used, reset)

    def check_budget_in(
        self, tx: Conn, guild_id: int, need: int, amount: int | None, period: str | None
    ) -> None:
        if amount is None:
            return
        state = self.budget_in(tx, guild_id, amount, period)
        remaining = state.remaining or 0
        if need > remaining:
            raise BudgetExhausted(need, remaining, state.next_reset, self.clock())

    # -- reads ------------------------------------------------------------------------------
    async def balance(self, guild_id: int, member_id: int, roles: Sequence[int] = ()) -> Balance:
        """A read without side effects: a refill due this period shows as pending."""
        return await self.db.read(self.balance_in, guild_id, member_id, roles)

    async def budget_state(
        self, guild_id: int, amount: int | None, period: str | None
    ) -> BudgetState:
        return await self.db.read(self.budget_in, guild_id, amount, period)

    def balance_in(
        self, conn: Conn, guild_id: int, member_id: int, roles: Sequence[int] = ()
    ) -> Balance:
        now = self.clock()
        rule = self.allowance_in(conn, guild_id, member_id, roles)
        row = fetch_row(
            conn,
            "SELECT allowance_balance, grant_balance, last_refill_key FROM accounts"
            " WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        account = Account(row[0], row[1], row[2]) if row else Account(0, 0, None)
        held_row = fetch_row(
            conn,
            "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(from_allowance), 0) FROM holds"
            " WHERE guild_id = ? AND member_id = ? AND settled_at IS NULL",
            (guild_id, member_id),
        )
        held = int(held_row[0]) if held_row else 0
        pending = 0
        key = period_key(rule.period, now)
        if rule.amount > 0 and account.last_refill_key != key:
            refilled = fetch_row(
                conn,
                "SELECT 1 FROM ledger_entries WHERE guild_id = ? AND member_id = ?"
                " AND kind = 'refill' AND period_key = ?",
                (guild_id, member_id, key),
            )
            if refilled is None:
                pending = max(0, rule.amount - account.allowance_balance)
        start = period_start(rule.period, now)
        spent_row = fetch_row(
            conn,
            "SELECT COALESCE(SUM(CASE WHEN settled_at IS NULL THEN 0"
            " ELSE captured + extra_charged - refunded END), 0) FROM holds"
            " WHERE guild_id = ? AND member_id = ? AND created_at >= ?",
            (guild_id, member_id, iso(start) if start else ""),
        )
        return Balance(
            available=account.total + pending,
            allowance_balance=account.allowance_balance,
            grant_balance=account.grant_balance,
            held=held,
            allowance=rule,
            next_refill=next_period_start(rule.period, now) if rule.amount > 0 else None,
            pending_refill=pending,
            spent_this_period=int(spent_row[0]) if spent_row else 0,
        )

    async def rules(self, guild_id: int) -> list[tuple[str, int, int, str]]:
        """The guild's allowance rules as (scope, target id, amount, period)."""
        rows = await self.db.fetchall(
            "SELECT scope, target_id, amount, period FROM allowances WHERE guild_id = ?"
            " ORDER BY scope, amount DESC",
            (guild_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def available_now(self, guild_id: int, member_id: int) -> int:
        """The account's balance as it stands (no refill preview): exact while a job holds."""
        row = await self.db.fetchone(
            "SELECT allowance_balance + grant_balance FROM accounts"
            " WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        return int(row[0]) if row else 0

    async def history(self, guild_id: int, member_id: int, limit: int = 20) -> list[Entry]:
        rows = await self.db.fetchall(
            "SELECT * FROM ledger_entries WHERE guild_id = ? AND member_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (guild_id, member_id, limit),
        )
        return [_entry_of(r) for r in rows]

    async def entries(self, guild_id: int) -> list[Entry]:
        rows = await self.db.fetchall(
            "SELECT * FROM ledger_entries WHERE guild_id = ? ORDER BY id", (guild_id,)
        )
        return [_entry_of(r) for r in rows]

    async def export_csv(self, guild_id: int) -> str:
        """Every entry of the guild, oldest first, with each member's running balance."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "entry_id",
                "created_at",
                "member_id",
                "kind",
                "amount",
                "delta",
                "balance_after",
                "job_id",
                "actor_id",
                "reason",
            ]
        )
        running: dict[int, int] = {}
        for e in await self.entries(guild_id):
            running[e.member_id] = running.get(e.member_id, 0) + e.delta
            writer.writerow(
                [
                    e.id,
                    e.created_at,
                    e.member_id,
                    e.kind,
                    e.amount,
                    e.delta,
                    running[e.member_id],
                    e.job_id or "",
                    e.actor_id or "",
                    e.reason or "",
                ]
            )
        return out.getvalue()


def _entry_of(row: sqlite3.Row) -> Entry:
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
