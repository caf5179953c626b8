"""Bans and strikes: what moderators give members, one guild at a time (part of
ModerationStore). A ban never shortens one in force: whoever gives it (/mod ban, a review
item's Ban button), the longer ban stands."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store import audit
from bot.store.db import Conn, Database, iso
from bot.store.db import row as fetch_row

MAX_BAN_DAYS = 3650


@dataclass(frozen=True)
class Ban:
    id: int
    guild_id: int
    member_id: int
    actor_id: int | None
    reason: str | None
    created_at: datetime
    expires_at: datetime | None


class LongerBanStands(Exception):
    """A ban asked for while one at least as long is in force: that one stands."""

    def __init__(self, ban: Ban) -> None:
        self.ban = ban
        until = f"until {ban.expires_at:%Y-%m-%d %H:%M} UTC" if ban.expires_at else "with no end"
        by = f" (by <@{ban.actor_id}>)" if ban.actor_id else ""
        super().__init__(f"<@{ban.member_id}> is already banned here {until}{by}; that ban stands.")


def outlasts(expires: datetime | None, days: int | None, now: datetime) -> bool:
    """A ban ending at `expires` lasts at least as long as a new one of `days` (None: no end)."""
    return expires is None or (days is not None and expires >= now + timedelta(days=days))


def _ban(row: sqlite3.Row) -> Ban:
    expires = row["expires_at"]
    return Ban(
        row["id"],
        row["guild_id"],
        row["member_id"],
        row["actor_id"],
        row["reason"],
        datetime.fromisoformat(row["created_at"]),
        datetime.fromisoformat(expires) if expires else None,
    )


class Sanctions:
    """Part of ModerationStore (its `db` and `clock`)."""

    db: Database
    clock: Callable[[], datetime]

    # -- bans -------------------------------------------------------------------------------
    async def active_ban(self, guild_id: int, member_id: int) -> Ban | None:
        return await self.db.read(self.active_ban_in, guild_id, member_id)

    def active_ban_in(self, conn: Conn, guild_id: int, member_id: int) -> Ban | None:
        sql = (
            "SELECT * FROM bans WHERE guild_id = ? AND member_id = ? AND lifted_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id DESC LIMIT 1"
        )
        params = (guild_id, member_id, iso(self.clock()))
        row = fetch_row(conn, sql, params)
        return None if row is None else _ban(row)

    def ban_in(
        self,
        tx: Conn,
        guild_id: int,
        member_id: int,
        *,
        actor_id: int | None,
        reason: str | None,
        days: int | None,
        item_id: int | None = None,
    ) -> Ban:
        """Ban from the bot in this guild; days=None is until unbanned. LongerBanStands when
        a ban in force lasts at least as long (a shorter one would let the member back early)."""
        if days is not None and not 1 <= days <= MAX_BAN_DAYS:
            raise ValueError(f"days must be from 1 to {MAX_BAN_DAYS} (or empty for no end)")
        now = self.clock()
        current = self.active_ban_in(tx, guild_id, member_id)
        if current is not None and outlasts(current.expires_at, days, now):
            raise LongerBanStands(current)
        expires = now + timedelta(days=days) if days else None
        tx.execute(
            "UPDATE bans SET lifted_at = ?, lifted_by = ? WHERE guild_id = ? AND member_id = ?"
            " AND lifted_at IS NULL",
            (iso(now), actor_id, guild_id, member_id),
        )
        cursor = tx.execute(
            "INSERT INTO bans (guild_id, member_id, actor_id, reason, created_at, expires_at,"
            " review_item_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                guild_id,
                member_id,
                actor_id,
                reason,
                iso(now),
                iso(expires) if expires else None,
                item_id,
            ),
        )
        audit.record(
            tx,
            now,
            "moderation.ban",
            guild_id=guild_id,
            actor_id=actor_id,
            target=f"member:{member_id}",
            reason=reason,
            days=days,
        )
        return Ban(int(cursor.lastrowid or 0), guild_id, member_id, actor_id, reason, now, expires)

    async def ban(
        self,
        guild_id: int,
        member_id: int,
        *,
        actor_id: int | None,
        reason: str | None,
        days: int | None,
    ) -> Ban:
        return await self.db.write(
            self.ban_in, guild_id, member_id, actor_id=actor_id, reason=reason, days=days
        )

    async def unban(self, guild_id: int, member_id: int, *, actor_id: int | None) -> bool:
        return await self.db.write(self.unban_in, guild_id, member_id, actor_id=actor_id)

    def unban_in(self, tx: Conn, guild_id: int, member_id: int, *, actor_id: int | None) -> bool:
        now = self.clock()
        cursor = tx.execute(
            "UPDATE bans SET lifted_at = ?, lifted_by = ? WHERE guild_id = ? AND member_id = ?"
            " AND lifted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
            (iso(now), actor_id, guild_id, member_id, iso(now)),
        )
        if cursor.rowcount:
            audit.record(
                tx,
                now,
                "moderation.unban",
                guild_id=guild_id,
                actor_id=actor_id,
                target=f"member:{member_id}",
            )
        return bool(cursor.rowcount)

    # -- strikes ----------------------------------------------------------------------------
    def add_strike_in(
        self,
        tx: Conn,
        guild_id: int,
        member_id: int,
        *,
        actor_id: int | None,
        reason: str | None,
        item_id: int | None,
        window_days: int,
    ) -> int:
        """Record a strike; return how many the member has within the window."""
        now = self.clock()
        tx.execute(
            "INSERT INTO strikes (guild_id, member_id, actor_id, reason, review_item_id,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (guild_id, member_id, actor_id, reason, item_id, iso(now)),
        )
        audit.record(
            tx,
            now,
            "moderation.strike",
            guild_id=guild_id,
            actor_id=actor_id,
            target=f"member:{member_id}",
            reason=reason,
            item=item_id,
        )
        return self.strike_count_in(tx, guild_id, member_id, window_days)

    def strike_count_in(self, conn: Conn, guild_id: int, member_id: int, window_days: int) -> int:
        since = iso(self.clock() - timedelta(days=window_days))
        sql = "SELECT COUNT(*) FROM strikes WHERE guild_id = ? AND member_id = ? AND created_at > ?"
        params = (guild_id, member_id, since)
        row = fetch_row(conn, sql, params)
        return int(row[0]) if row else 0

    async def strike_count(self, guild_id: int, member_id: int, window_days: int) -> int:
        return await self.db.read(self.strike_count_in, guild_id, member_id, window_days)

    async def strikes(self, guild_id: int, member_id: int) -> list[sqlite3.Row]:
        return await self.db.fetchall(
            "SELECT * FROM strikes WHERE guild_id = ? AND member_id = ? ORDER BY id DESC",
            (guild_id, member_id),
        )
