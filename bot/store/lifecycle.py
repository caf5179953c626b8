"""Models (and tools) the orchestrator said are unavailable or retired: switched off for the
whole deployment, whatever each guild chose, until an admin switches them on again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.store import audit
from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import rows as fetch_rows


def retired_names_in(conn: Conn) -> frozenset[str]:
    return frozenset(r["model"] for r in fetch_rows(conn, "SELECT model FROM retired_models"))


@dataclass(frozen=True)
class Retirement:
    model: str
    reason: str | None
    job_id: str | None
    retired_at: datetime


class ModelLifecycle:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.clock = db, clock

    async def retired(self) -> dict[str, Retirement]:
        return await self.db.read(self.retired_in)

    def retired_in(self, conn: Conn) -> dict[str, Retirement]:
        found = fetch_rows(conn, "SELECT model, reason, job_id, retired_at FROM retired_models")
        return {
            r["model"]: Retirement(
                r["model"], r["reason"], r["job_id"], datetime.fromisoformat(r["retired_at"])
            )
            for r in found
        }

    def retire_in(self, tx: Conn, model: str, reason: str | None, job_id: str | None) -> bool:
        """Switch `model` off everywhere; True when it was on until now (tell the operator)."""
        cursor = tx.execute(
            "INSERT INTO retired_models (model, reason, job_id, retired_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (model) DO NOTHING",
            (model, (reason or "")[:500] or None, job_id, iso(self.clock())),
        )
        if cursor.rowcount != 1:
            return False
        audit.record(tx, self.clock(), "model.retired", target=model, reason=reason, job=job_id)
        return True

    def reinstate_in(
        self, tx: Conn, model: str, *, guild_id: int | None, actor_id: int | None
    ) -> bool:
        """An admin switches a retired model on again (for every guild); True if it was off."""
        cursor = tx.execute("DELETE FROM retired_models WHERE model = ?", (model,))
        if cursor.rowcount != 1:
            return False
        audit.record(
            tx, self.clock(), "model.reinstated", guild_id=guild_id, actor_id=actor_id, target=model
        )
        return True
