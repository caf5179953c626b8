"""`python -m bot check-config`: is the configuration usable? Says what is missing."""

from __future__ import annotations

import argparse
import sys

from bot.config import load_settings, problems_for_running
from bot.net import without_credentials
from bot.store.db import DatabaseProblem
from bot.store.location import DatabaseUnavailable, check_writable
from bot.store.probe import check_schema


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check-config", help="validate the settings and say what is missing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    problems = problems_for_running(settings)
    try:  # what `run` checks before it starts, creating nothing
        check_writable(settings.database.path, create=False)
    except DatabaseUnavailable as exc:
        problems.append(f"database.path: {exc}")
    if settings.database.path.exists():  # a missing one is created by `run`
        try:
            check_schema(settings.database.path)
        except DatabaseProblem as exc:
            problems.append(f"database.path: {exc}")
    if settings.provider == "openai":
        mode = (
            "simulator (no OPENAI_API_KEY: placeholder images, nothing spent)"
            if settings.simulated
            else f"endpoint at {without_credentials(settings.openai.base_url)}"
        )
        print("lane:         openai (BOT_PROVIDER=openai): the OpenAI Images API")
        print(f"openai:       {mode}")
    else:
        mode = (
            "simulator (no CIVITAI_TOKEN: placeholder images, no Buzz spent)"
            if settings.simulated
            else (f"orchestrator at {without_credentials(settings.civitai.base_url)}")
        )
        print("lane:         civitai (BOT_PROVIDER=civitai): the Civitai orchestrator")
        print(f"orchestrator: {mode}")
    print(f"database:     {settings.database.path}")
    # The bot registers the commands at start whenever they changed; --sync only forces it.
    where = settings.discord.dev_guild or "none (commands are registered globally)"
    print(f"dev guild:    {where}")
    print(f"discord token: {'set' if settings.discord.token else 'missing'}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print("configuration OK")
    return 1 if problems else 0
