"""`python -m bot audit [--action A] [--guild G] [--csv]`: the audit log, oldest first — e.g.
`--action upstream.usage` for each job's token usage, or `upstream.call_lost` for calls that
may have been billed upstream without a result: what an operator reconciles with the bill."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys

from bot.cli.arguments import count, snowflake
from bot.cli.database import open_database
from bot.config import load_settings
from bot.store import audit


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("audit", help="the audit log as JSON lines or CSV (oldest first)")
    p.add_argument("--action", help="only this action, e.g. upstream.usage")
    p.add_argument("--guild", type=snowflake, help="only this guild")
    p.add_argument("--limit", type=count, default=10_000, help="at most this many (default 10000)")
    p.add_argument("--csv", action="store_true", help="CSV instead of JSON lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)

    async def go() -> list[audit.AuditEvent]:
        async with open_database(settings) as db:
            # One more than asked: whether the limit left newer events out.
            return await audit.events(
                db, args.guild, args.action, args.limit + 1, oldest_first=True
            )

    found = asyncio.run(go())
    if len(found) > args.limit:  # oldest first: what is cut is the newest, often the wanted
        found = found[: args.limit]
        print(
            f"note: stopped at --limit {args.limit:,} (the oldest); newer events were left out: "
            "raise --limit, or narrow it with --action / --guild",
            file=sys.stderr,
        )
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["id", "created_at", "guild_id", "actor_id", "action", "target", "details"])
        for e in found:
            details = json.dumps(e.details, sort_keys=True)
            writer.writerow(
                [
                    e.id,
                    e.created_at,
                    e.guild_id or "",
                    e.actor_id or "",
                    e.action,
                    e.target or "",
                    details,
                ]
            )
        return 0
    for e in found:
        print(
            json.dumps(
                {
                    "id": e.id,
                    "created_at": e.created_at,
                    "guild_id": e.guild_id,
                    "actor_id": e.actor_id,
                    "action": e.action,
                    "target": e.target,
                    "details": e.details,
                },
                sort_keys=True,
            )
        )
    return 0
