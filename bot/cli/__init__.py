"""The command line. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot.cli import check_config, jobs_cmd, ledger_cmd, quote, simulator_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="A Discord bot for OpenAI image models on the Civitai orchestrator.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML settings file (default: BOT_CONFIG or config.toml)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (quote, check_config, ledger_cmd, jobs_cmd, simulator_cmd):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        build_parser().print_help()
        return 2
    return int(args.handler(args) or 0)
