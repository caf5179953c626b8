"""Run a real discord.py bot against a :class:`FakeDiscord`.

discord.py takes its endpoints from two class attributes, patched here only while a bot runs:

* ``discord.http.Route.BASE`` - read when each ``Route`` is built, for REST and for the
  interaction webhooks (``discord.webhook.async_`` uses the same ``Route``);
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` - a plain ``Client`` connects there
  first (it never calls ``GET /gateway/bot``; only ``AutoShardedClient`` does), adding
  ``?v=10&encoding=json&compress=zlib-stream`` (``zstd-stream`` if a zstd module is present);
  after READY it reconnects / resumes at READY's ``resume_gateway_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .server import FakeDiscord

ClientT = TypeVar("ClientT", bound=discord.Client)


@contextlib.contextmanager
def patched_endpoints(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py at the fake; restore the real endpoints afterwards."""
    old_base = Route.BASE
    old_gateway = DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = fake.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        Route.BASE = old_base
        DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


async def start_bot(
    fake: FakeDiscord, bot: ClientT, *, ready_timeout: float = 15.0
) -> asyncio.Task[None]:
    """Start ``bot.start(token)`` and return its task once the bot is ready.

    Races readiness against the start task, so an exception in ``setup_hook``, login or the
    gateway is raised here with its own traceback instead of hanging the test.
    """
    task = asyncio.create_task(bot.start(fake.bot_token), name=f"bot-{id(bot):x}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ready_timeout
    while not bot.is_ready():
        if task.done():
            exc = task.exception()
            await _close_quietly(bot)
            if exc is not None:
                raise exc
            raise RuntimeError("bot.start() returned before the bot became ready")
        if loop.time() > deadline:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await _close_quietly(bot)
            raise TimeoutError(
                f"bot not ready after {ready_timeout}s (did it pass chunk_guilds_at_startup=False "
                "and a short guild_ready_timeout?)"
            )
        await asyncio.wait({task}, timeout=0.01)
    # Let the ready handlers that discord.py schedules run before the test acts.
    await asyncio.sleep(0)
    return task


async def _close_quietly(bot: discord.Client) -> None:
    # A failed start leaves the HTTP session open; close it so aiohttp does not complain.
    with contextlib.suppress(Exception):
        await bot.close()


async def stop_bot(bot: discord.Client, task: asyncio.Task[None], *, timeout: float = 10.0) -> None:
    """Close the bot cleanly and re-raise whatever its start task died of."""
    if not bot.is_closed():
        await bot.close()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise TimeoutError("bot.start() did not finish after bot.close()")
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, bot: ClientT, *, ready_timeout: float = 15.0
) -> AsyncIterator[ClientT]:
    """``async with running_bot(fake, bot) as bot:`` - the bot is ready inside the block.

    On exit the bot is closed and its task awaited; endpoints are restored. A new bot
    instance can then be started against the same fake (state is kept by the fake).
    """
    with patched_endpoints(fake):
        task = await start_bot(fake, bot, ready_timeout=ready_timeout)
        fake.watch(task)
        try:
            yield bot
        finally:
            fake.unwatch(task)
            await stop_bot(bot, task)
