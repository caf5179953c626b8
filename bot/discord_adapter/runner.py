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
from bot.net import SimulatorUnavailable
from bot.services import build_services

log = logging.getLogger(__name__)


class StartupFailed(Exception):
    """Discord refused the token, could not be reached or closed the gateway for good: the
    admin's to fix, not a bug."""


async def serve(settings: Settings, *, sync: bool) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:  # first: a stop asked for while starting is an orderly one too
        loop.add_signal_handler(number, stopping.set)
    try:
        services = await build_services(settings)
    except BaseException as exc:
        for number in signals:
            loop.remove_signal_handler(number)
        if isinstance(exc, SimulatorUnavailable):
            raise StartupFailed(str(exc)) from None
        raise
    bot = make_bot(services, sync_global=sync)
    try:
        assert settings.discord.token is not None
        if stopping.is_set():
            log.info("stopping before connecting to Discord")
            return
        async with bot:
            running = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()))
            stop = asyncio.create_task(stopping.wait())
            await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not running.done():
                log.info("stopping; running jobs resume at the next start")
                _hear_again(loop, signals)  # the drain may take a while: say it is under way
                await bot.close()
                try:
                    await running
                except (aiohttp.ClientError, discord.DiscordException, OSError) as exc:
                    # Stopped while logging in or connecting: closing cut that short.
                    log.info("the stop cut the connection to Discord short (%s)", exc)
                return
            await running
    except discord.LoginFailure:
        raise StartupFailed("Discord refused the bot token (DISCORD_TOKEN)") from None
    except discord.ConnectionClosed as exc:  # a close code discord.py does not reconnect after
        raise StartupFailed(gateway_closed(exc.code)) from None
    except discord.RateLimited as exc:  # a long 429 at login (ratelimits.py)
        raise StartupFailed(
            f"Discord asks to wait {exc.retry_after:.0f}s before the bot logs in; try again later"
        ) from None
    except discord.HTTPException as exc:  # a Discord outage at login (502, 503...)
        raise StartupFailed(
            f"Discord answered {exc.status} while the bot logged in; try again later"
        ) from None
    except (DevGuildUnavailable, MetricsUnavailable) as exc:
        raise StartupFailed(str(exc)) from None
    except (aiohttp.ClientConnectorError, OSError) as exc:
        raise StartupFailed(f"cannot reach Discord: {exc}") from None
    finally:
        # A second SIGTERM while the database closes must not kill it half-way (the WAL not
        # folded in, the last settlement's commit at stake): heard, said, and ignored.
        _hear_again(loop, signals)
        try:
            await services.aclose()
        finally:
            for number in signals:
                loop.remove_signal_handler(number)


def _hear_again(loop: asyncio.AbstractEventLoop, signals: tuple[signal.Signals, ...]) -> None:
    for number in signals:
        loop.add_signal_handler(number, _already_stopping, number)


def _already_stopping(number: int) -> None:
    log.warning(
        "already stopping (%s again): the bot exits once its running work and database are saved",
        signal.Signals(number).name,
    )


def gateway_closed(code: int) -> str:
    """What to do when Discord closed the gateway for good (its close codes)."""
    if code == 4004:  # the token was reset in the developer portal while the bot ran
        return "Discord refused the bot token (DISCORD_TOKEN)"
    if code == 4011:
        return (
            "Discord requires sharding for this many servers (4011): set "
            "BOT_DISCORD__SHARD_COUNT (Discord's recommended count, or more)"
        )
    return f"Discord closed the connection ({code}); restart the bot, or see the logs if it lasts"
