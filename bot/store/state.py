"""The bot's own small memory between runs: a few keys and their values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import row as fetch_row


class BotState:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.clock = db, clock

    async def get(self, key: str) -> str | None:
        found = await self.db.fetchone("SELECT value FROM bot_state WHERE key = ?", (key,))
        return None if found is None else str(found[0])

    async def set(self, key: str, value: str) -> None:
        await self.db.write(self.set_in, key, value)

    async def update(self, key: str, change: Callable[[str | None], str]) -> str:
        """Set `key` to change(its stored value) in one transaction and return the new value:
        another process (the CLI beside the running bot) writing the key meanwhile is not lost."""
        return await self.db.write(self._update_in, key, change)

    def _update_in(self, tx: Conn, key: str, change: Callable[[str | None], str]) -> str:
        value = change(self.get_in(tx, key))
        self.set_in(tx, key, value)
        return value

    async def forget(self, key: str) -> None:
        await self.db.write(self.forget_in, key)

    def get_in(self, conn: Conn, key: str) -> str | None:
        found = fetch_row(conn, "SELECT value FROM bot_state WHERE key = ?", (key,))
        return None if found is None else str(found[0])

    def set_in(self, tx: Conn, key: str, value: str) -> None:
        tx.execute(
            "INSERT INTO bot_state (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (key, value, iso(self.clock())),
        )

    def forget_in(self, tx: Conn, key: str) -> None:
        tx.execute("DELETE FROM bot_state WHERE key = ?", (key,))
