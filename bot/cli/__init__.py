"""The command line. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot.cli import (
    check_config,
    commands_doc,
    jobs_cmd,
    ledger_cmd,
    quote,
    run_cmd,
    simulator_cmd,
)
from bot.config import ConfigError


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
    for module in (run_cmd, quote, check_config, ledger_cmd, jobs_cmd, simulator_cmd, commands_doc):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `python -m bot` runs the bot
        args = parser.parse_args([*argv, "run"])
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:  # every command: a clear message naming the key, exit 1
        print(exc, file=sys.stderr)
        return 1
