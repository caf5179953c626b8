"""One redraw at a time per review card, each bounded in time.

Two decisions close together each redraw the card; Discord runs several edits of a channel at
once, so an older picture could land after a newer one and stay. Taking turns per card, each
redraw reading the database once its turn comes, the last edit shows the latest state. A turn
is bounded (CARD_EDIT_WAIT): an edit Discord keeps failing or rate-limiting is given up, so it
neither holds the card's later redraws nor, through discord.py's shared bucket, other cards'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Seconds one card edit may take, discord.py's own retries of 5xx and short 429s included.
CARD_EDIT_WAIT = 30.0


class CardTurns:
    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    @asynccontextmanager
    async def turn(self, item_id: int) -> AsyncIterator[None]:
        """The card's turn: held while its state is read and its edit sent."""
        lock = self._locks.setdefault(item_id, asyncio.Lock())
        self._waiting[item_id] = self._waiting.get(item_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[item_id] -= 1
            if not self._waiting[item_id]:  # nobody else waits: the lock is not kept
                del self._waiting[item_id], self._locks[item_id]
