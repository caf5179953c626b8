"""`python -m bot run [--sync]`: the bot itself; `python -m bot health`: is it alive?"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from bot import logs
from bot.config import Settings, load_settings, problems_for_running
from bot.store.db import DatabaseProblem, SchemaTooNew, utcnow
from bot.store.probe import check_schema

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(seconds=120)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("run", help="run the bot (the default command)")
    p.add_argument("--sync", action="store_true", help="sync slash commands globally at start")
    p.set_defaults(handler=run)
    h = commands.add_parser("health", help="exit 0 while the running bot writes its heartbeat")
    h.set_defaults(handler=health)


def configure_logging(settings: Settings) -> None:
    tokens = [t.get_secret_value() for t in (settings.discord.token, settings.civitai.token) if t]
    logs.configure(settings.logging.level, tokens)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    problems = problems_for_running(settings)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if settings.database.path.exists():  # else the bot creates it
        check_schema(settings.database.path)  # before the simulator or Discord start
    try:
        lock = hold_instance_lock(settings.database.path)
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    with lock, contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(_main(settings, sync=args.sync))
        except (StartupFailed, SchemaTooNew) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


class StartupFailed(Exception):
    """Discord refused the token or could not be reached: the admin's to fix, not a bug."""


class AlreadyRunning(Exception):
    pass


def hold_instance_lock(db_path: Path) -> IO[str]:
    """One bot per database: two would both resume every job and post each result twice.
    The lock lives as long as the returned file stays open (the whole run)."""
    path = db_path.with_name(db_path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(
            f"another bot is already running on {db_path} (lock {path}); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


async def _main(settings: Settings, *, sync: bool) -> None:
    import aiohttp
    import discord

    from bot.app import ImageBot  # discord.py is only imported for this command
    from bot.services import build_services

    services = await build_services(settings)
    bot = ImageBot(services, sync_global=sync)
    try:
        assert settings.discord.token is not None
        async with bot:
            await bot.start(settings.discord.token.get_secret_value())
    except discord.LoginFailure:
        raise StartupFailed("Discord refused the bot token (DISCORD_TOKEN)") from None
    except (aiohttp.ClientConnectorError, OSError) as exc:
        raise StartupFailed(f"cannot reach Discord: {exc}") from None
    finally:
        await services.aclose()


def health(args: argparse.Namespace) -> int:
    from bot.app import heartbeat_path

    settings = load_settings(args.config)
    try:
        check_schema(settings.database.path)
    except DatabaseProblem as exc:  # from the wrong folder, no heartbeat would say "not running"
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    problems = problems_for_running(settings)
    path = heartbeat_path(settings.database.path)
    try:
        beat = json.loads(path.read_text())
        age = utcnow() - datetime.fromisoformat(beat["at"])
    except (OSError, ValueError, KeyError):
        problems.append(f"no heartbeat at {path}: is the bot running?")
    else:
        if age > STALE_AFTER:
            problems.append(f"the last heartbeat is {int(age.total_seconds())} s old")
        elif not beat.get("ready"):
            problems.append("the bot is running but not connected to Discord")
    for problem in problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    if not problems:
        print(f"healthy: {beat.get('guilds', 0)} guild(s), {beat.get('jobs_running', 0)} job(s)")
    return 1 if problems else 0
