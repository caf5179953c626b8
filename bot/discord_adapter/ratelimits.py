"""Discord's 429s are waited out only briefly. discord.py sleeps out any `retry_after` it is
given (an hour, if Discord says so) while the caller waits: a result post holding a delivery
turn, a status edit holding its job's lock. Longer waits raise discord.RateLimited instead,
which callers treat as a passing fault to retry later without holding anything.

Two paths: the bot's own HTTP client honours `max_ratelimit_timeout` (raising before it sleeps
and before it takes the global lock, so nothing is left locked); the webhook path (interaction
follow-ups and their edits) has no such option, so it gets a session whose middleware raises
the same error on such a 429 before discord.py can sleep on it."""

from __future__ import annotations

import aiohttp
import discord

from bot.discord_adapter import server_errors

# discord.py's smallest allowed max_ratelimit_timeout.
RATE_LIMIT_WAIT = 30.0


async def _bounded_429(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    response = await handler(request)
    if response.status != 429:
        return response
    try:
        data = await response.json(content_type=None)
        retry_after = float(data["retry_after"])
    except (ValueError, TypeError, KeyError, aiohttp.ClientError):
        return response  # not Discord's JSON: discord.py decides
    if retry_after > RATE_LIMIT_WAIT:
        response.release()
        raise discord.RateLimited(retry_after)
    return response


def webhook_session() -> aiohttp.ClientSession:
    """A session for webhook calls whose long 429s raise discord.RateLimited."""
    return aiohttp.ClientSession(
        middlewares=(_bounded_429,),
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=[server_errors.trace_config()],
    )
