"""Several small connection pools to the orchestrator, and which one a request uses.

Each long-poll holds a connection, and httpcore scans its whole pool on every request and
response close (quadratic with thousands of jobs in flight): several small pools keep each scan
short. A request goes to a pool with an idle connection if there is one (so it reuses it rather
than opening another), else to the least busy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx


class Shards:
    def __init__(self, pools: list[httpx.AsyncClient]) -> None:
        self.pools = pools
        self._busy = [0] * len(pools)
        # The most requests each pool has had at once: the connections it opened and keeps.
        self._opened = [0] * len(pools)

    @contextlib.contextmanager
    def use(self) -> Iterator[httpx.AsyncClient]:
        """A pool for one request, held until its response is closed."""
        index = min(
            range(len(self.pools)),
            key=lambda i: (self._busy[i] >= self._opened[i], self._busy[i]),
        )
        self._busy[index] += 1
        self._opened[index] = max(self._opened[index], self._busy[index])
        try:
            yield self.pools[index]
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()
