"""`python -m bot backup OUT [--force]`: a consistent copy of the database, bot running or not."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.table import human_bytes
from bot.config import load_settings
from bot.store.backup import backup
from bot.store.db import newest_schema


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "backup", help="copy the database to OUT (consistent, safe while the bot runs)"
    )
    p.add_argument("out", metavar="OUT", type=Path, help="the backup file to write")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        done = backup(settings.database.path, args.out, force=args.force)
    except KeyboardInterrupt as exc:  # the partial copy is removed; OUT is never half written
        raise type(exc)("backup interrupted before it finished; run it again") from None
    known = newest_schema()
    # A newer database is still copied: a backup is what an operator wants before a downgrade.
    note = f" (newer than this bot, which knows up to {known})" if done.schema > known else ""
    if done.schema < known:  # copied as it is: only the bot's start migrates a database
        note = " (older than this bot: its next start upgrades it)"
    print(f"backup: {done.path}")
    print(f"size:   {done.size:,} bytes ({human_bytes(done.size)})")
    print(f"schema: {done.schema}{note}")
    return 0
