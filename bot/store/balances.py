"""Reading an account and the guild's budget: what a member may spend (a refill due this
period shown as pending, never written by a read), and what all members together spent in
the budget period. The writes (holds, settlements, grants) are in ledger.py."""

from __future__ import annotations

from collections.abc import Sequence

from bot.store.allowances import Allowances
from bot.store.db import Conn, iso
from bot.store.db import row as fetch_row
from bot.store.db import rows as fetch_rows
from bot.store.ledger_records import Account, Balance, BudgetExhausted, BudgetState
from bot.store.periods import next_period_start, period_key, period_start


class Balances(Allowances):
    # -- budget -----------------------------------------------------------------------------
    def budget_in(
        self, conn: Conn, guild_id: int, amount: int | None, period: str | None
    ) -> BudgetState:
        """What all members together spent (or hold) in the guild's budget period, and what
        the guild paid itself (pre-moderation checks: guild_charges)."""
        now = self.clock()
        start = period_start(period, now) if period else None
        sql = (
            "SELECT COALESCE(SUM(CASE WHEN settled_at IS NULL THEN amount"
            " ELSE captured + extra_charged - refunded END), 0)"
            " + (SELECT COALESCE(SUM(amount), 0) FROM guild_charges"
            " WHERE guild_id = ?1 AND created_at >= ?2)"
            " FROM holds WHERE guild_id = ?1 AND created_at >= ?2"
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
        due = rule.amount > 0 and account.last_refill_key != key
        if due and not self.refilled_in(conn, guild_id, member_id, key):
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

    async def available_now(self, guild_id: int, member_id: int) -> int:
        """What the member may spend, as /buzz balance says it (this period's refill, not made
        yet, included) when that does not depend on their roles (the guild has no role rule,
        or the member an override of their own); else the account as it stands."""
        return await self.db.read(self._available_now_in, guild_id, member_id)

    def roles_matter_in(self, conn: Conn, guild_id: int, member_id: int) -> bool:
        """Whether the member's allowance hangs on their roles: the guild has a role rule and
        the member no rule of their own. If not, their rule is known without the roles."""
        by_role = fetch_row(
            conn,
            "SELECT 1 FROM allowances WHERE guild_id = ? AND scope = 'role' AND NOT EXISTS"
            " (SELECT 1 FROM allowances WHERE guild_id = ? AND scope = 'member'"
            " AND target_id = ?) LIMIT 1",
            (guild_id, guild_id, member_id),
        )
        return by_role is not None

    def refill_may_be_due_in(self, conn: Conn, guild_id: int, member_id: int) -> bool:
        """Roles unknown: whether a rule that may be the member's (the default or a role's)
        has a refill this period not made yet."""
        rows = fetch_rows(
            conn,
            "SELECT scope, period FROM allowances WHERE guild_id = ? AND scope != 'member'"
            " AND amount > 0",
            (guild_id,),
        )
        periods = {row[1] for row in rows}
        has_default = fetch_row(
            conn,
            "SELECT 1 FROM allowances WHERE guild_id = ? AND scope = 'default'",
            (guild_id,),
        )
        if has_default is None and self.default.amount > 0:
            periods.add(self.default.period)
        now = self.clock()
        return any(
            not self.refilled_in(conn, guild_id, member_id, period_key(period, now))
            for period in periods
        )

    def _available_now_in(self, conn: Conn, guild_id: int, member_id: int) -> int:
        if not self.roles_matter_in(conn, guild_id, member_id):
            return self.balance_in(conn, guild_id, member_id).available
        row = fetch_row(
            conn,
            "SELECT allowance_balance + grant_balance FROM accounts"
            " WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        return int(row[0]) if row else 0
