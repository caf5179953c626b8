"""`python -m bot openai-models [--enable MODEL]`: which models the OpenAI lane offers, and
switching back on one that the endpoint had said it no longer serves."""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.database import open_database
from bot.config import load_settings
from bot.openai_api.catalog import MODEL_NAMES, availability, model_spec
from bot.openai_api.pricing import PriceTable
from bot.openai_api.switch import ModelSwitch
from bot.store.state import BotState


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "openai-models",
        help="the OpenAI lane's models: offered, unpriced, switched off",
        description="Lists the OpenAI lane's models and why any is not offered. A model the "
        "endpoint answered 'not found' or 'deprecated' for is switched off until --enable.",
    )
    p.add_argument("--enable", metavar="MODEL", help="switch a model back on")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.enable is not None and model_spec(args.enable) is None:
        print(f"error: unknown model {args.enable!r}: one of {', '.join(MODEL_NAMES)}")
        return 1

    async def go() -> dict[str, str]:
        async with open_database(settings) as db:
            switch = await ModelSwitch.load(BotState(db))
            if args.enable is not None and await switch.enable(args.enable):
                print(f"{args.enable} is switched on again (restart the bot to offer it)")
            elif args.enable is not None:
                print(f"{args.enable} was not switched off")
            return switch.disabled

    disabled = asyncio.run(go())
    config = settings.openai
    found = availability(config.models or None, PriceTable(config.prices).priced_models())
    served = set(config.models) if config.models else set(MODEL_NAMES)
    for name in MODEL_NAMES:
        if name not in served:
            state = "not served (openai.models)"
        elif name in disabled:
            state = f"switched off: {disabled[name]}"
        elif name in found.unpriced:
            state = "no Buzz price (openai.prices)"
        else:
            state = "offered"
        print(f"{name:<18} {state}")
    if settings.provider != "openai":
        print("(the active lane is civitai: set BOT_PROVIDER=openai to use these)")
    return 0
