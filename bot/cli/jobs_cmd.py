"""`python -m bot jobs [--active]`: recent jobs and their state."""

from __future__ import annotations

import argparse
import asyncio
import json

from bot.cli.arguments import count
from bot.cli.database import open_database
from bot.cli.table import table
from bot.config import load_settings
from bot.store.jobs import JobStore


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("jobs", help="recent jobs (newest first)")
    parser.add_argument("--active", action="store_true", help="only jobs still in progress")
    parser.add_argument("--limit", type=count, default=50, help="how many jobs (default 50)")
    parser.add_argument("--json", action="store_true", help="a JSON list on stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)

    async def go() -> int:
        async with open_database(settings) as db:
            jobs = await JobStore(db).all(active_only=args.active, limit=args.limit)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": j.id,
                            "guild": j.guild_id,
                            "member": j.member_id,
                            "model": j.model,
                            "operation": j.operation,
                            "status": j.status.value,
                            "estimate": j.estimate,
                            "held": j.hold_amount,
                            "charged": j.charged,
                            "workflow": j.workflow_id,
                            "created_at": j.created_at.isoformat(),
                            "error": j.error,
                            "usage": j.usage,
                        }
                        for j in jobs
                    ]
                )
            )
            return 0
        rows = [
            (
                j.id,
                f"{j.created_at:%m-%d %H:%M}",
                j.guild_id,
                j.member_id,
                j.model,
                j.operation.removesuffix("Image"),
                j.status.value,
                j.hold_amount,
                j.charged,
            )
            for j in jobs
        ]
        print(
            table(
                ("job", "created", "guild", "member", "model", "op", "status", "held", "charged"),
                rows,
            )
        )
        return 0

    return asyncio.run(go())
