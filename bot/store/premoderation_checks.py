"""AI pre-moderation checks written down by their externalId (migration 019): open from
before the submit until what the check was charged is counted, so a check cut off by a stop,
or whose charge could not be read, is counted later, exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Conn, iso
from bot.store.db import rows as fetch_rows


@dataclass(frozen=True)
class OpenCheck:
    check_id: str  # the workflow's externalId (and its tag)
    guild_id: int
    member_id: int
    job_id: str


def open_in(
    tx: Conn, check_id: str, guild_id: int, member_id: int, job_id: str, now: datetime
) -> None:
    tx.execute(
        "INSERT INTO premoderation_checks (external_id, guild_id, member_id, job_id, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (external_id) DO NOTHING",
        (check_id, guild_id, member_id, job_id, iso(now)),
    )


def settle_in(
    tx: Conn,
    check_id: str,
    guild_id: int,
    member_id: int,
    job_id: str,
    now: datetime,
    cost: int | None,
) -> bool:
    """Settle the check when its cost is known: True when this call settles it (the cost is
    to be counted), False when it was settled before. Cost None leaves it open (written down
    even when the database refused that before the submit)."""
    open_in(tx, check_id, guild_id, member_id, job_id, now)
    if cost is None:
        return True
    cursor = tx.execute(
        "UPDATE premoderation_checks SET settled_at = ?"
        " WHERE external_id = ? AND settled_at IS NULL",
        (iso(now), check_id),
    )
    return bool(cursor.rowcount)


def open_ones_in(conn: Conn) -> list[OpenCheck]:
    found = fetch_rows(
        conn,
        "SELECT external_id, guild_id, member_id, job_id FROM premoderation_checks"
        " WHERE settled_at IS NULL ORDER BY created_at",
    )
    return [
        OpenCheck(str(r["external_id"]), int(r["guild_id"]), int(r["member_id"]), str(r["job_id"]))
        for r in found
    ]
