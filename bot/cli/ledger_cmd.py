"""`python -m bot ledger ...`: inspect and adjust balances from the shell.

balance, history and export only read: they refuse a missing database instead of creating one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from bot.cli.arguments import count, snowflake
from bot.cli.database import open_database
from bot.cli.table import table
from bot.config import load_settings
from bot.store.ledger import Ledger, LedgerError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ledger", help="balances, history, grants and CSV export")
    sub = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    p = sub.add_parser("balance", help="a member's balance and allowance")
    _member(p)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(handler=lambda a: _run(_balance, a, create=False))
    p = sub.add_parser("history", help="a member's ledger entries, newest first")
    _member(p)
    p.add_argument("--limit", type=count, default=20, help="how many entries (default 20)")
    p.add_argument("--json", action="store_true", help="a JSON list on stdout")
    p.set_defaults(handler=lambda a: _run(_history, a, create=False))
    p = sub.add_parser("grant", help="give a member Buzz on top of their allowance")
    _member(p)
    p.add_argument("amount", type=int, help="Buzz to give (1 to 10,000,000)")
    p.add_argument("--reason", required=True, help="why (kept in the ledger and the audit log)")
    p.set_defaults(handler=lambda a: _run(_grant, a, create=True))
    p = sub.add_parser("take", help="take Buzz from a member (grants first; never below 0)")
    _member(p)
    p.add_argument("amount", type=int, help="Buzz to take (1 to 10,000,000)")
    p.add_argument("--reason", required=True, help="why (kept in the ledger and the audit log)")
    p.set_defaults(handler=lambda a: _run(_take, a, create=True))
    p = sub.add_parser("export", help="the guild's whole ledger as CSV on stdout")
    p.add_argument("guild", type=snowflake, help="the guild (server) id")
    p.set_defaults(handler=lambda a: _run(_export, a, create=False))


def _member(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("guild", type=snowflake, help="the guild (server) id")
    parser.add_argument("member", type=snowflake, help="the member's user id")


Action = Callable[[Ledger, argparse.Namespace], Awaitable[int]]


def _run(action: Action, args: argparse.Namespace, *, create: bool) -> int:
    settings = load_settings(args.config)

    async def go() -> int:
        async with open_database(settings, create=create) as db:
            ledger = Ledger(
                db,
                default_allowance=settings.defaults.allowance,
                default_period=settings.defaults.allowance_period,
            )
            return await action(ledger, args)

    try:
        return asyncio.run(go())
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _balance(ledger: Ledger, args: argparse.Namespace) -> int:
    b = await ledger.balance(args.guild, args.member)
    if args.json:
        data = asdict(b)
        data["next_refill"] = b.next_refill.isoformat() if b.next_refill else None
        print(json.dumps(data))
        return 0
    refill = f"{b.next_refill:%Y-%m-%d %H:%M} UTC" if b.next_refill else "-"
    rows = [
        ("available", f"{b.available:,}"),
        ("  allowance bucket", f"{b.allowance_balance:,}"),
        ("  grants", f"{b.grant_balance:,}"),
        ("  refill pending", f"{b.pending_refill:,}"),
        ("held by running jobs", f"{b.held:,}"),
        ("spent this period", f"{b.spent_this_period:,}"),
        ("allowance", f"{b.allowance.amount:,} {b.allowance.period} ({b.allowance.source})"),
        ("next refill", refill),
    ]
    print(table(("", "Buzz"), rows))
    print("(roles are not known here: role allowances apply when the member uses the bot)")
    return 0


async def _history(ledger: Ledger, args: argparse.Namespace) -> int:
    entries = await ledger.history(args.guild, args.member, args.limit)
    if args.json:
        print(json.dumps([asdict(e) for e in entries]))
        return 0
    rows = [
        (e.created_at[:19], e.kind, e.amount, f"{e.delta:+}", e.job_id, e.reason) for e in entries
    ]
    print(table(("time (UTC)", "kind", "amount", "change", "job", "reason"), rows))
    return 0


async def _grant(ledger: Ledger, args: argparse.Namespace) -> int:
    account = await ledger.grant(
        args.guild, args.member, args.amount, actor_id=None, reason=args.reason
    )
    print(f"granted {args.amount:,} Buzz; balance now {account.total:,}")
    return 0


async def _take(ledger: Ledger, args: argparse.Namespace) -> int:
    account = await ledger.take(
        args.guild, args.member, args.amount, actor_id=None, reason=args.reason
    )
    print(f"took {args.amount:,} Buzz; balance now {account.total:,}")
    return 0


async def _export(ledger: Ledger, args: argparse.Namespace) -> int:
    sys.stdout.write(await ledger.export_csv(args.guild))
    return 0
