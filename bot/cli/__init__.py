"""The command line. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bot import logs
from bot.cli import (
    audit_cmd,
    backup_cmd,
    check_config,
    commands_doc,
    jobs_cmd,
    ledger_cmd,
    openai_models_cmd,
    prune_cmd,
    quote,
    run_cmd,
    simulator_cmd,
)
from bot.config import ConfigError, load_settings
from bot.store.db import DatabaseProblem, store_busy

CONFIG_HELP = "TOML settings file (default: BOT_CONFIG or config.toml)"
DISTRIBUTION = "civitai-image-bot"


class Parser(argparse.ArgumentParser):
    """Every command and subcommand accepts --config too, before or after its own arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand that was not given --config keeps the top level's value.
        self.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m bot",
        description="A Discord bot for OpenAI image models on the Civitai orchestrator.",
    )
    parser.set_defaults(config=None)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="show the version"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (
        run_cmd,
        quote,
        check_config,
        ledger_cmd,
        jobs_cmd,
        backup_cmd,
        prune_cmd,
        simulator_cmd,
        commands_doc,
        openai_models_cmd,
        audit_cmd,
    ):
        module.register(commands)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, `kill`, `docker stop`): unwinds like Ctrl-C, so what a command
    leaves half done (a backup's partial copy) is removed on the way out."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `python -m bot` runs the bot
        args = parser.parse_args([*argv, "run"])
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt as exc:  # one line, and the shell's code for a stop by signal
        print(str(exc) or f"{args.command}: interrupted", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    except BrokenPipeError:
        # The reader had what it wanted (`... | head`): stop as `cat` would, quietly. Python
        # flushes stdout again at exit, which must not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except ConfigError as exc:  # every command: a clear message naming the key, exit 1
        print(exc, file=sys.stderr)
        return 1
    except DatabaseProblem as exc:  # missing, unreadable or newer than this code
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.OperationalError as exc:  # locked by the running bot past the timeout...
        busy = store_busy(exc)
        print(f"error: {busy or f'the database refused: {exc}'}; try again", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # a damaged page: the operator's to fix, not a bug
        print(f"error: {damaged(args, exc)}", file=sys.stderr)
        return 1
    except Exception:  # a bug: its traceback for the report, through the token redaction
        report_bug(args)
        return 1


def report_bug(args: argparse.Namespace) -> None:
    """Logs the exception being handled, redacted: Python's own printout of a traceback would
    show a token an HTTP client's error carried."""
    root = logging.getLogger()
    redacted = any(isinstance(f, logs.RedactSecrets) for h in root.handlers for f in h.filters)
    if not redacted:  # a command other than run: nothing configured the redaction yet
        try:
            secrets = run_cmd.secrets_of(load_settings(args.config))
        except ConfigError:
            secrets = []
        root.handlers[:] = [logs.make_handler(secrets)]  # basicConfig's would show it all
    logging.getLogger("bot").critical(
        "%s stopped by an unexpected error (a bug: please report it with this traceback)",
        args.command,
        exc_info=True,
    )


def damaged(args: argparse.Namespace, exc: sqlite3.DatabaseError) -> str:
    try:
        where = f"the database at {load_settings(args.config).database.path.absolute()}"
    except ConfigError:
        where = "the database"
    return (
        f"{where} is damaged ({exc}); stop the bot and restore a backup "
        "(docs/admin-guide.md, Backup and restore)"
    )
