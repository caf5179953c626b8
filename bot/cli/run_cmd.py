"""`python -m bot run [--sync]`: the bot itself; `python -m bot health`: is it alive?"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO

from bot import heartbeat, logs
from bot.config import Settings, load_settings, problems_for_running
from bot.memory_tuning import tune_memory
from bot.net import url_secrets
from bot.store.db import DatabaseProblem, SchemaTooNew
from bot.store.location import (
    DatabaseUnavailable,
    check_writable,
    file_unwritable,
    lock_path,
)
from bot.store.probe import check_schema

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("run", help="run the bot (the default command)")
    p.add_argument(
        "--sync",
        action="store_true",
        help="register the slash commands at start even if unchanged (globally, or in "
        "BOT_DEV_GUILD); without it they are registered only when they changed",
    )
    p.set_defaults(handler=run)
    h = commands.add_parser("health", help="exit 0 while the running bot writes its heartbeat")
    h.set_defaults(handler=health)


def secrets_of(settings: Settings) -> list[str]:
    """What no log line may show: the tokens, and a user:password@ written into a URL."""
    secrets = (settings.discord.token, settings.civitai.token, settings.openai.api_key)
    tokens = [t.get_secret_value() for t in secrets if t]
    return tokens + url_secrets(settings.civitai.base_url) + url_secrets(settings.openai.base_url)


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.logging.level, secrets_of(settings), settings.logging.format)


def run(args: argparse.Namespace) -> int:
    # Until the bot's own handlers are in place, SIGTERM stops it as Ctrl-C does: in order,
    # not killed mid-step.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("stopped before the bot had started", file=sys.stderr)
        return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    problems = problems_for_running(settings)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if settings.database.path.exists():  # else the bot creates it
        check_schema(settings.database.path)  # before the simulator or Discord start
    try:
        check_writable(settings.database.path)
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        lock = hold_instance_lock(settings.database.path)
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    configure_logging(settings)
    # discord.py is imported only for this command.
    from bot.discord_adapter.runner import StartupFailed, serve

    tune_memory()
    with lock, contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve(settings, sync=args.sync))
        except (StartupFailed, SchemaTooNew) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


class AlreadyRunning(Exception):
    pass


def hold_instance_lock(db_path: Path) -> IO[str]:
    """One bot per database: two would both resume every job and post each result twice.
    The lock lives as long as the returned file stays open (the whole run)."""
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = path.open("a+")
    except PermissionError:  # left by a run as another user (root)
        raise file_unwritable("the lock file", path) from None
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


def health(args: argparse.Namespace) -> int:
    """Reads only the heartbeat: no token needed, nothing opened but one small file."""
    settings = load_settings(args.config)
    try:
        check_schema(settings.database.path)
    except DatabaseProblem as exc:  # from the wrong folder, no heartbeat would say "not running"
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    found, beat = heartbeat.problems(heartbeat.heartbeat_path(settings.database.path))
    for problem in found:
        print(f"unhealthy: {problem}", file=sys.stderr)
    if not found and beat is not None:
        print(f"healthy: {beat.guilds} guild(s), {beat.jobs_running} job(s)")
    return 1 if found else 0
