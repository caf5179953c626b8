"""Turns for deliveries that hold images in memory: a few at once, and a large result alone.

A delivery holds its downloads, the decoded pixels while a result is fitted under Discord's
upload limit, and the fitted upload. For a 1024x1024 result that is a few MB; for a 3840x2160
PNG about 60 MB. Two large ones at once doubled the engine's peak memory when thousands of
jobs ended together, so a delivery takes turns in proportion to its pixels, first come first
served (a large one is not overtaken for ever by small ones).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# A delivery of up to this many pixels (a 2048x2048, or four 1024x1024) takes one turn.
PIXELS_PER_TURN = 2048 * 2048


def turns_for(images: list[dict[str, Any]], total: int) -> int:
    """How many turns a delivery of these result images takes (1 when their sizes are unknown)."""
    pixels = sum(int(i.get("width") or 0) * int(i.get("height") or 0) for i in images)
    return max(1, min(total, math.ceil(pixels / PIXELS_PER_TURN)))


class Turns:
    """A counted allowance handed out in order of asking."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, n: int) -> None:
        n = min(n, self.total)
        if not self._waiting and self._free >= n:
            self._free -= n
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, granted)
        self._waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(n)  # granted just as we were cancelled: give them back
            elif entry in self._waiting:
                self._waiting.remove(entry)
                self._grant()  # those behind us may fit now
            raise

    def release(self, n: int) -> None:
        self._free += min(n, self.total)
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self._free:
            n, granted = self._waiting.popleft()
            if granted.done():  # cancelled, its task not yet run: the turns stay free
                continue
            self._free -= n
            granted.set_result(None)

    @asynccontextmanager
    async def take(self, n: int) -> AsyncIterator[None]:
        await self.acquire(n)
        try:
            yield
        finally:
            self.release(n)
