"""Which connection pool a request uses: one with an idle connection first, never more than
`per_pool` requests in one pool at once, a new pool only when all are full."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from bot.civitai.shards import Shards


def stub_pools() -> tuple[Shards, list[Any]]:
    made: list[Any] = []

    def factory() -> Any:
        made.append(object())
        return made[-1]

    return Shards(factory, per_pool=3), made


def test_pools_are_added_only_when_every_pool_is_full() -> None:
    shards, made = stub_pools()
    with ExitStack() as held:
        used = [held.enter_context(shards.use()) for _ in range(7)]
        assert len(made) == 3  # 3 + 3 + 1
        assert max(used.count(pool) for pool in made) == 3


def test_a_request_goes_where_a_connection_is_idle() -> None:
    shards, made = stub_pools()
    with ExitStack() as first:
        for _ in range(4):  # pool 0 full (3), pool 1 with one
            first.enter_context(shards.use())
    # All four finished: both pools keep their connections; the next requests reuse them
    # before any new pool or connection.
    with ExitStack() as second:
        again = [second.enter_context(shards.use()) for _ in range(4)]
        assert len(made) == 2
        assert sorted(again.count(pool) for pool in made) == [1, 3]
