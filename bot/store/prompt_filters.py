"""A guild's prompt filters: the words and patterns that hold a prompt for the moderators
(the matching rules are in bot/filters.py)."""

from __future__ import annotations

from datetime import datetime

from bot.store import audit
from bot.store.db import Conn, Database, iso


async def filter_rules(db: Database, guild_id: int) -> list[tuple[int, str, bool]]:
    """A guild's prompt filters: (id, pattern, is_regex), oldest first."""
    rows = await db.fetchall(
        "SELECT id, pattern, is_regex FROM prompt_filters WHERE guild_id = ? ORDER BY id",
        (guild_id,),
    )
    return [(int(r[0]), str(r[1]), bool(r[2])) for r in rows]


def add_filter(
    tx: Conn, guild_id: int, pattern: str, is_regex: bool, *, actor_id: int | None, now: datetime
) -> int | None:
    """Store a filter; None when the guild already has it."""
    cursor = tx.execute(
        "INSERT OR IGNORE INTO prompt_filters (guild_id, pattern, is_regex, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (guild_id, pattern, int(is_regex), actor_id, iso(now)),
    )
    if not cursor.rowcount:
        return None
    audit.record(
        tx, now, "filter.add", guild_id=guild_id, actor_id=actor_id, target=pattern, regex=is_regex
    )
    return int(cursor.lastrowid or 0)


def remove_filter(
    tx: Conn, guild_id: int, pattern: str, is_regex: bool, *, actor_id: int | None, now: datetime
) -> bool:
    cursor = tx.execute(
        "DELETE FROM prompt_filters WHERE guild_id = ? AND pattern = ? AND is_regex = ?",
        (guild_id, pattern, int(is_regex)),
    )
    if cursor.rowcount:
        audit.record(
            tx,
            now,
            "filter.remove",
            guild_id=guild_id,
            actor_id=actor_id,
            target=pattern,
            regex=is_regex,
        )
    return bool(cursor.rowcount)
