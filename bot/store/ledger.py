"""The Buzz ledger: per (guild, member) accounts from append-only entries, exact to the Buzz.

Spending takes the allowance first. Every hold is settled exactly once: capture what the
orchestrator charged (allowance first), release the rest; a charge above the hold is taken
from the balance down to zero, never below, and what is left is recorded as the guild's loss
in the audit log. The allowance rules and refills are in allowances.py, the reads (balances,
the budget) in balances.py, the records in ledger_records.py.

Methods that change money take the open transaction (`tx`) so that a job's state change and its
ledger entries commit together. Balances never go negative: the code checks, and the schema's
CHECK constraints would abort the transaction if the code were wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.store import audit
from bot.store.balances import Balances
from bot.store.db import Conn, iso
from bot.store.db import row as fetch_row
from bot.store.ledger_records import (
    MAX_CHARGE,
    Account,
    AlreadySettled,
    Balance,
    BudgetExhausted,
    Hold,
    InsufficientBuzz,
    InvalidAmount,
    LedgerError,
    Settlement,
    check_amount,
)
from bot.store.periods import next_period_start
from bot.store.statements import Statements

__all__ = [
    "AlreadySettled",
    "Balance",
    "BudgetExhausted",
    "Hold",
    "InsufficientBuzz",
    "InvalidAmount",
    "Ledger",
    "LedgerError",
    "Settlement",
]


class Ledger(Balances, Statements):
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
        hold = self.hold_in(tx, job_id)
        assert hold is not None
        return hold

    def hold_in(self, conn: Conn, job_id: str) -> Hold | None:
        found = fetch_row(conn, "SELECT * FROM holds WHERE job_id = ?", (job_id,))
        return Hold.of(found) if found else None

    async def hold(self, job_id: str) -> Hold | None:
        found = await self.db.fetchone("SELECT * FROM holds WHERE job_id = ?", (job_id,))
        return Hold.of(found) if found else None

    def settle_in(
        self, tx: Conn, job_id: str, charged: int, *, actor_id: int | None = None
    ) -> Settlement:
        """Capture what was charged (up to the hold), release the rest, collect any excess."""
        check_amount(charged, allow_zero=True, high=MAX_CHARGE)
        hold = self.hold_in(tx, job_id)
        if hold is None:
            raise LedgerError(f"job {job_id} has no hold")
        if hold.settled:
            raise AlreadySettled(f"the hold of job {job_id} is already settled")
        guild_id, member_id, amount = hold.guild_id, hold.member_id, hold.amount
        captured = min(charged, amount)
        released = amount - captured
        cap_a = min(captured, hold.from_allowance)
        rel_a, rel_g = hold.from_allowance - cap_a, hold.from_grant - (captured - cap_a)
        if captured:
            self._entry(
                tx,
                guild_id,
                member_id,
                "capture",
                captured,
                0,
                0,
                hold_id=hold.id,
                job_id=job_id,
                actor_id=actor_id,
            )
        if released:
            # Allowance given back pays first for later jobs that took grants instead of it.
            moved, onto_settled = self._cover_later_holds(tx, hold, rel_a)
            self._entry(
                tx,
                guild_id,
                member_id,
                "release",
                released,
                rel_a - moved,
                rel_g + moved,
                hold_id=hold.id,
                job_id=job_id,
                actor_id=actor_id,
            )
            self._expire_old_allowance(tx, hold, rel_a - moved, job_id, onto_settled)
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
                    hold_id=hold.id,
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
            (captured, released, paid, loss, iso(self.clock()), hold.id),
        )
        if cursor.rowcount != 1:  # the lock makes this unreachable; the check makes it certain
            raise AlreadySettled(f"the hold of job {job_id} is already settled")
        self._settled_old_hold(tx, hold)
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
        if hold is None or not hold.settled:
            raise LedgerError(f"job {job_id} has nothing settled to refund")
        refundable = hold.refundable
        amount = refundable if amount is None else amount
        if amount <= 0 or amount > refundable:
            raise InvalidAmount(f"refundable for job {job_id}: {refundable:,} Buzz")
        self._account(tx, hold.guild_id, hold.member_id)
        self._entry(
            tx,
            hold.guild_id,
            hold.member_id,
            "refund",
            amount,
            0,
            amount,
            hold_id=hold.id,
            job_id=job_id,
            actor_id=actor_id,
            reason=reason,
        )
        tx.execute("UPDATE holds SET refunded = refunded + ? WHERE id = ?", (amount, hold.id))
        return amount

    # -- grants and takes -------------------------------------------------------------------
    async def grant(
        self,
        guild_id: int,
        member_id: int,
        amount: int,
        *,
        actor_id: int | None,
        reason: str | None,
        roles: Sequence[int] | None = None,
    ) -> Account:
        return await self.db.write(
            self.grant_in,
            guild_id,
            member_id,
            amount,
            actor_id=actor_id,
            reason=reason,
            roles=roles,
        )

    async def take(
        self,
        guild_id: int,
        member_id: int,
        amount: int,
        *,
        actor_id: int | None,
        reason: str | None,
        roles: Sequence[int] | None = None,
    ) -> Account:
        return await self.db.write(
            self.take_in,
            guild_id,
            member_id,
            amount,
            actor_id=actor_id,
            reason=reason,
            roles=roles,
        )

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
        """One-off Buzz on top of the allowance. With the member's roles (from Discord), or
        when their rule does not hang on roles, the refill due this period is applied first,
        so the balance reported is the real one."""
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
        if (
            roles is None
            and amount > account.grant_balance
            and self.roles_matter_in(tx, guild_id, member_id)
            and self.refill_may_be_due_in(tx, guild_id, member_id)
        ):
            # The refill at their next use would top the allowance taken back up.
            raise InvalidAmount(
                f"cannot take {amount:,} Buzz here: the member's allowance depends on their"
                " roles and this period's refill is not made yet, so it would give the"
                f" allowance back; take at most {account.grant_balance:,} (their grants) here,"
                " or use /quota take in Discord"
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
        # Without the roles (the command line), the refill is still due first when the rule is
        # known without them: else a take of allowance is given back by it at the next use.
        if roles is None and not self.roles_matter_in(tx, guild_id, member_id):
            roles = ()
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
