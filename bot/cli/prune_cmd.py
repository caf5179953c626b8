"""`python -m bot prune [--dry-run]`: delete the stored images of jobs past the retention."""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.database import open_database
from bot.cli.table import human_bytes
from bot.config import load_settings
from bot.store.retention import PruneReport, Retention


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "prune",
        help="delete stored images of jobs that ended more than retention.days ago",
        description="Deletes the stored images (edit sources, and results that came in-band) "
        "of finished jobs older than the retention (BOT_RETENTION__DAYS, default 30). Jobs, "
        "the ledger and the audit log stay.",
    )
    p.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)

    async def go() -> PruneReport:
        async with open_database(settings) as db:
            retention = Retention(db, settings.retention.days)
            if args.dry_run:
                return await retention.preview()
            return await retention.prune(trigger="cli")

    report = asyncio.run(go())
    what = (
        f"{report.images:,} stored image(s) of {report.jobs:,} job(s),"
        f" {report.bytes:,} bytes ({human_bytes(report.bytes)})"
    )
    when = (
        f"jobs that ended before {report.cutoff:%Y-%m-%d %H:%M} UTC"
        f" (retention {settings.retention.days} days)"
    )
    if report.dry_run:
        print(f"would delete {what}: {when}; run without --dry-run to delete them")
    else:
        print(f"deleted {what}: {when}")
        if report.bytes:
            # Freed pages are reused for new images; only VACUUM (bot stopped) shrinks the file.
            print("the database file keeps its size: SQLite reuses the space for new images")
    return 0
