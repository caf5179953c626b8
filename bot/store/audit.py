"""The audit log: who did what to whom, written in the same transaction as the change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.store.db import Conn, Database, iso


@dataclass(frozen=True)
class AuditEvent:
    id: int
    guild_id: int | None
    actor_id: int | None
    action: str
    target: str | None
    details: dict[str, Any]
    created_at: str


def record(
    tx: Conn,
    when: datetime,
    action: str,
    *,
    guild_id: int | None = None,
    actor_id: int | None = None,
    target: str | None = None,
    **details: Any,
) -> None:
    tx.execute(
        "INSERT INTO audit_events (guild_id, actor_id, action, target, details, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (guild_id, actor_id, action, target, json.dumps(details, default=str), iso(when)),
    )


async def events(
    db: Database,
    guild_id: int | None = None,
    action: str | None = None,
    limit: int = 100,
    *,
    target: str | None = None,
    oldest_first: bool = False,
) -> list[AuditEvent]:
    clauses: list[str] = []
    params: list[Any] = []
    if target is not None:
        clauses.append("target = ?")
        params.append(target)
    if guild_id is not None:
        clauses.append("guild_id = ?")
        params.append(guild_id)
    if action is not None:
        clauses.append("action = ?")
        params.append(action)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await db.fetchall(
        f"SELECT * FROM audit_events {where} ORDER BY id {'ASC' if oldest_first else 'DESC'}"
        " LIMIT ?",
        (*params, limit),
    )
    return [
        AuditEvent(
            r["id"],
            r["guild_id"],
            r["actor_id"],
            r["action"],
            r["target"],
            json.loads(r["details"]),
            r["created_at"],
        )
        for r in rows
    ]
