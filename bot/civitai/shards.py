"""Small connection pools to the orchestrator, as many as the load needs, and which one a
request uses.

Each long-poll holds a connection, and httpcore walks its whole pool on every request and
response close — for each idle connection a readability check (a system call) and a count of
the whole pool — so one pool of 3 000 connections costs milliseconds per request, quadratically.
Pools of at most `per_pool` connections keep each walk short: a request goes to a pool with an
idle connection if there is one (reusing it rather than opening another), else to a pool with
room, else to a new pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import httpx


class Shards:
    def __init__(self, factory: Callable[[], httpx.AsyncClient], per_pool: int = 32) -> None:
        self._factory = factory
        self.per_pool = max(1, per_pool)
        self.pools: list[httpx.AsyncClient] = []
        self._busy: list[int] = []
        # The most requests each pool has had at once: the connections it opened and keeps.
        self._opened: list[int] = []

    @contextlib.contextmanager
    def use(self) -> Iterator[httpx.AsyncClient]:
        """A pool for one request, held until its response is closed."""
        index = self._pick()
        self._busy[index] += 1
        self._opened[index] = max(self._opened[index], self._busy[index])
        try:
            yield self.pools[index]
        finally:
            self._busy[index] -= 1

    def _pick(self) -> int:
        best, best_key = -1, (2, 0)
        for index, busy in enumerate(self._busy):
            # 0: it has an idle connection; 1: it has room for another; 2: it is full.
            rank = 0 if busy < self._opened[index] else 1 if busy < self.per_pool else 2
            if (rank, busy) < best_key:
                best, best_key = index, (rank, busy)
        if best >= 0:
            return best
        self.pools.append(self._factory())
        self._busy.append(0)
        self._opened.append(0)
        return len(self.pools) - 1

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()
