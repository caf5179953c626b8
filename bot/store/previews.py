"""Previews put on status messages and not taken off yet (shown_previews), so that one a
stopped process left (its edits failed, or it died) is taken off at the next start."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.store.db import Conn, Database, iso


class ShownPreviews:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db, self.clock = db, clock

    async def record(self, job_id: str, name: str) -> None:
        """The preview `name` is (about to be) on the job's status message."""
        await self.db.write(self._record, job_id, name, iso(self.clock()))

    @staticmethod
    def _record(tx: Conn, job_id: str, name: str, when: str) -> None:
        tx.execute(
            "INSERT INTO shown_previews (job_id, name, shown_at) VALUES (?, ?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET name = excluded.name",
            (job_id, name, when),
        )

    async def taken_off(self, job_id: str) -> None:
        """Off the message (or it never will be: Discord refuses for good)."""
        await self.db.write(self._delete, job_id)

    @staticmethod
    def _delete(tx: Conn, job_id: str) -> None:
        tx.execute("DELETE FROM shown_previews WHERE job_id = ?", (job_id,))

    async def left(self) -> dict[str, str]:
        """Job id -> the preview's file name, for every preview not known to be off."""
        found = await self.db.fetchall("SELECT job_id, name FROM shown_previews ORDER BY shown_at")
        return {str(r[0]): str(r[1]) for r in found}
