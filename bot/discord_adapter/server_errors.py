"""Discord's 5xx answers seen while a result is posted. Discord can create a message and still
answer 5xx; discord.py then sends it again by itself (500/502/504 on the bot's client, any 5xx
on a webhook), and when that retry succeeds the bot is told of one message while the channel
shows two. The HTTP sessions report every 5xx here, so the poster knows to look for copies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import SimpleNamespace

import aiohttp

# The 5xx statuses answered within the current task's watch (None: nobody watches).
_seen: ContextVar[list[int] | None] = ContextVar("discord_5xx_seen", default=None)


async def _on_request_end(
    _session: aiohttp.ClientSession,
    _context: SimpleNamespace,
    params: aiohttp.TraceRequestEndParams,
) -> None:
    seen = _seen.get()
    if seen is not None and params.response.status >= 500:
        seen.append(params.response.status)


def trace_config() -> aiohttp.TraceConfig:
    """For every session that talks to Discord (the bot's own and the webhook one)."""
    config = aiohttp.TraceConfig()
    config.on_request_end.append(_on_request_end)
    return config


@contextmanager
def watching() -> Iterator[list[int]]:
    """The 5xx statuses Discord answers to this task's requests within the block."""
    seen: list[int] = []
    token = _seen.set(seen)
    try:
        yield seen
    finally:
        _seen.reset(token)
