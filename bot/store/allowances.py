"""Members' accounts and their allowances: the rules (guild default, roles, a member's own),
the lazy refill once per period, and the primitives every ledger entry goes through.

An account has two buckets: the allowance (topped up to the member's allowance once per
period, lazily, on first use) and grants (one-off, never expire). Every entry changes the
cached buckets in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from bot.store import audit
from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import row as fetch_row
from bot.store.db import rows as fetch_rows
from bot.store.ledger_records import Account, Allowance, Hold, check_amount
from bot.store.periods import period_key


class Allowances:
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
    async def set_allowance(
        self,
        guild_id: int,
        scope: str,
        target_id: int,
        amount: int,
        period: str,
        actor_id: int | None,
    ) -> None:
        await self.db.write(
            self.set_allowance_in, guild_id, scope, target_id, amount, period, actor_id
        )

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

    async def clear_allowance(
        self, guild_id: int, scope: str, target_id: int, actor_id: int | None
    ) -> tuple[int, str] | None:
        """Remove a rule; the (amount, period) it had, None when there was none."""
        return await self.db.write(self._take_rule_in, guild_id, scope, target_id, actor_id)

    def _take_rule_in(
        self, tx: Conn, guild_id: int, scope: str, target_id: int, actor_id: int | None
    ) -> tuple[int, str] | None:
        found = fetch_row(
            tx,
            "SELECT amount, period FROM allowances WHERE guild_id = ? AND scope = ?"
            " AND target_id = ?",
            (guild_id, scope, target_id),
        )
        if found is None:
            return None
        self.clear_allowance_in(tx, guild_id, scope, target_id, actor_id)
        return int(found[0]), str(found[1])

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
            role = row["target_id"]
            return Allowance(row["amount"], row["period"], f"role {role}", role_id=role)
        if "default" in by_scope:
            row = by_scope["default"][0]
            return Allowance(row["amount"], row["period"], "guild default")
        return self.default

    async def rules(self, guild_id: int) -> list[tuple[str, int, int, str]]:
        """The guild's allowance rules as (scope, target id, amount, period)."""
        rows = await self.db.fetchall(
            "SELECT scope, target_id, amount, period FROM allowances WHERE guild_id = ?"
            " ORDER BY scope, amount DESC",
            (guild_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

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

    def _cover_later_holds(self, tx: Conn, hold: Hold, released_allowance: int) -> tuple[int, int]:
        """Spending takes the allowance first: allowance a hold gives back pays first for the
        member's later jobs of the same refill period that took grants because this hold had
        it (their grant part becomes allowance; the grants come back with the release). Else
        the grants stay spent while the allowance sits unused, and the next refill only tops
        it up: the member loses grants, which never expire. (moved, of it onto settled jobs)"""
        if not released_allowance or hold.refill_key is None:
            return 0, 0
        later = fetch_rows(
            tx,
            "SELECT id, from_allowance, from_grant, captured, settled_at FROM holds"
            " WHERE guild_id = ? AND member_id = ? AND created_at >= ? AND id > ?"
            " AND refill_key = ? AND from_grant > 0 ORDER BY id",
            (hold.guild_id, hold.member_id, hold.created_at, hold.id, hold.refill_key),
        )
        left, onto_settled = released_allowance, 0
        for found in later:
            settled = found["settled_at"] is not None
            # An open job's whole grant part; a settled one's, what it was charged of it.
            movable = found["from_grant"]
            if settled:
                movable = max(0, found["captured"] - found["from_allowance"])
            moved = min(left, movable)
            if not moved:
                continue
            tx.execute(
                "UPDATE holds SET from_allowance = from_allowance + ?, from_grant = from_grant - ?"
                " WHERE id = ?",
                (moved, moved, found["id"]),
            )
            left -= moved
            onto_settled += moved if settled else 0
            if not left:
                break
        return released_allowance - left, onto_settled

    def _expire_old_allowance(
        self, tx: Conn, hold: Hold, released_allowance: int, job_id: str, onto_settled: int = 0
    ) -> None:
        """Allowance held across a refill, released now: as much of it expires as the refills
        since topped up only because it was held (refill_excess), so the member ends where they
        would have had the job never waited. Nothing expires when the refill added nothing
        (the bucket was full, or the allowance was lowered meanwhile). What of it paid for later
        jobs already settled (`onto_settled`) was spent, not held any more: the rest of the
        excess goes with it, without expiring."""
        guild_id, member_id = hold.guild_id, hold.member_id
        if not released_allowance and not onto_settled:
            return
        latest = fetch_row(
            tx,
            "SELECT last_refill_key, refill_excess FROM accounts"
            " WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        if latest is None or hold.refill_key == latest[0]:
            return  # no refill since the hold: the usual case, one read
        excess = int(latest[1])
        expired = min(excess, released_allowance)
        spent = min(excess - expired, onto_settled)
        if spent:
            tx.execute(
                "UPDATE accounts SET refill_excess = refill_excess - ?"
                " WHERE guild_id = ? AND member_id = ?",
                (spent, guild_id, member_id),
            )
        if expired:
            self._entry(
                tx,
                guild_id,
                member_id,
                "adjust",
                expired,
                -expired,
                0,
                hold_id=hold.id,
                job_id=job_id,
                reason="unused allowance of an earlier period expired",
            )
            tx.execute(
                "UPDATE accounts SET refill_excess = refill_excess - ?"
                " WHERE guild_id = ? AND member_id = ?",
                (expired, guild_id, member_id),
            )

    def _settled_old_hold(self, tx: Conn, hold: Hold) -> None:
        """A hold from before the last refill is settled: the refill excess keeps at most what
        the old holds still open hold. What a charged one held was spent (its share of the
        refills was right); left over, it would expire allowance of a job that only became old
        at a later refill, one the refills since never topped up for."""
        if not hold.from_allowance:
            return
        tx.execute(
            "UPDATE accounts SET refill_excess = MIN(refill_excess, (SELECT"
            " COALESCE(SUM(from_allowance), 0) FROM holds WHERE holds.guild_id = accounts.guild_id"
            " AND holds.member_id = accounts.member_id AND holds.settled_at IS NULL"
            " AND holds.refill_key IS NOT accounts.last_refill_key))"
            " WHERE guild_id = ? AND member_id = ? AND refill_excess > 0"
            " AND last_refill_key IS NOT ?",
            (hold.guild_id, hold.member_id, hold.refill_key),
        )

    def refilled_in(self, conn: Conn, guild_id: int, member_id: int, key: str) -> bool:
        """Whether the account was refilled in the period `key` (a top-up of 0 counts)."""
        found = fetch_row(
            conn,
            "SELECT 1 FROM refilled_periods WHERE guild_id = ? AND member_id = ?"
            " AND period_key = ?",
            (guild_id, member_id, key),
        )
        return found is not None

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
        # gained or lost), the clock can step back over a turn: a period already refilled is
        # not refilled again, even when its refill added nothing (the bucket was full).
        refilled = self.refilled_in(tx, guild_id, member_id, key)
        top_up = 0 if refilled else max(0, rule.amount - account.allowance_balance)
        tx.execute(
            "INSERT OR IGNORE INTO refilled_periods (guild_id, member_id, period_key)"
            " VALUES (?, ?, ?)",
            (guild_id, member_id, key),
        )
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
        # Open holds are all from earlier periods here; the top-up counted them as spent. The
        # part of it that would not have happened without them expires when they are released.
        found = fetch_row(
            tx,
            "SELECT COALESCE(SUM(from_allowance), 0), accounts.refill_excess FROM accounts"
            " LEFT JOIN holds ON holds.guild_id = accounts.guild_id"
            " AND holds.member_id = accounts.member_id AND holds.settled_at IS NULL"
            " WHERE accounts.guild_id = ? AND accounts.member_id = ?",
            (guild_id, member_id),
        )
        held = int(found[0]) if found else 0
        leftover = min(int(found[1]) if found else 0, held)
        excess = leftover + min(top_up, held - leftover)
        tx.execute(
            "UPDATE accounts SET last_refill_key = ?, refill_level = ?, refill_excess = ?"
            " WHERE guild_id = ? AND member_id = ?",
            (key, rule.amount, excess, guild_id, member_id),
        )
        return self._account(tx, guild_id, member_id), rule
