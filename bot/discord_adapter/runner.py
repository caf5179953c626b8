"""Running the bot until it is told to stop: SIGTERM (docker stop, systemd) takes the same
orderly path as Ctrl-C — the bot closes, running jobs stay to resume at the next start, the
database is checkpointed. What an admin must fix becomes StartupFailed, one line."""

from __future__ import annotations

import asyncio
import logging
import signal

import aiohttp
import discord

from bot.config import Settings
from bot.discord_adapter.bot import DevGuildUnavailable, make_bot
from bot.metrics_server import MetricsUnavailable
from bot.services import build_services

log = logging.getLogger(__name__)


class StartupFailed(Exception):
    """Discord refused the token or could not be reached: the admin's to fix, not a bug."""


async def serve(settings: Settings, *, sync: bool) -> None:
    services = await build_services(settings)
    bot = make_bot(services, sync_global=sync)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stopping.set)
    try:
        assert settings.discord.token is not None
        async with bot:
            running = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()))
            stop = asyncio.create_task(stopping.wait())
            await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                log.info("stopping; running jobs resume at the next start")
                await bot.close()
            stop.cancel()
            await running
    except discord.LoginFailure:
        raise StartupFailed("Discord refused the bot token (DISCORD_TOKEN)") from None
    except (DevGuildUnavailable, MetricsUnavailable) as exc:
        raise StartupFailed(str(exc)) from None
    except (aiohttp.ClientConnectorError, OSError) as exc:
        raise StartupFailed(f"cannot reach Discord: {exc}") from None
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        await services.aclose()
