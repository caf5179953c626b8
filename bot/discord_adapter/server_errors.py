"""Discord's odd answers, seen by every session that talks to it.

5xx while a result is posted: Discord can create a message and still answer 5xx; discord.py
then sends it again by itself (500/502/504 on the bot's client, any 5xx on a webhook), and when
that retry succeeds the bot is told of one message while the channel shows two. The HTTP
sessions report every 5xx here, so the poster knows to look for copies.

A 2xx whose body is not JSON (a proxy's HTML page, an empty or cut-off body): discord.py hands
the text on as if it were the object, and fails far away (a TypeError building the message).
Such an answer raises UnreadableAnswer, an aiohttp.ClientError: to every caller the same
passing fault as a connection lost after the request was sent (it may have been carried out).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import SimpleNamespace

import aiohttp

# The 5xx statuses answered within the current task's watch (None: nobody watches).
_seen: ContextVar[list[int] | None] = ContextVar("discord_5xx_seen", default=None)


NO_CONTENT = 204


class UnreadableAnswer(aiohttp.ClientResponseError):
    """Discord answered 2xx with a body that is not the JSON the call expects."""

    def __str__(self) -> str:
        return self.message  # not aiohttp's form: its URL carries a webhook's token


async def _on_request_end(
    _session: aiohttp.ClientSession,
    _context: SimpleNamespace,
    params: aiohttp.TraceRequestEndParams,
) -> None:
    response = params.response
    seen = _seen.get()
    if seen is not None and response.status >= 500:
        seen.append(response.status)
    answered = 200 <= response.status < 300 and response.status != NO_CONTENT
    if answered and params.url.path.startswith("/api/") and not await _is_json(response):
        response.release()
        raise UnreadableAnswer(
            response.request_info,
            (),
            message=f"Discord answered {response.status} without a JSON body",
        )


async def _is_json(response: aiohttp.ClientResponse) -> bool:
    # As discord.py reads it: only this exact type is parsed (the body is kept for it).
    if response.headers.get("Content-Type") != "application/json":
        return False
    try:
        json.loads(await response.read())
    except (ValueError, aiohttp.ClientError):
        return False
    return True


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
