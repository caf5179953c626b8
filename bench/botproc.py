"""The real bot in a process of its own, pointed at a loopback fake Discord and a simulator.

    python bench/botproc.py --api-base URL --gateway URL --discord-token T --guild ID
                            --sim-url URL --sim-token T --db PATH

Builds the services with bot.services.build_services and runs the bot's ImageBot, exactly as
tests/discord/harness.py does in-process (same bot options, attachment host 127.0.0.1), so its
memory can be measured alone. Members get a large weekly allowance and the guild's limits are
raised so the benchmark's load is never refused. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def run(args: argparse.Namespace) -> None:
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    from bot.config import Settings
    from bot.discord_adapter.bot import ImageBot
    from bot.memory_tuning import tune_memory
    from bot.services import build_services

    settings = Settings(
        discord={"token": args.discord_token, "dev_guild": args.guild},
        database={"path": Path(args.db)},
        media={"attachment_hosts": ["127.0.0.1"]},
        defaults={
            "allowance": 10_000_000,
            "allowance_period": "weekly",
            "confirm_above": 10_000_000,
            "per_member_concurrency": 50,
            "per_guild_concurrency": 10_000,
        },
    )
    services = await build_services(settings, base_url=args.sim_url, token=args.sim_token)
    tune_memory()  # as `python -m bot run` does
    # What tests/fakes/runner.py's patched_endpoints does, for this whole process.
    Route.BASE = args.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(args.gateway)
    bot = ImageBot(services, chunk_guilds_at_startup=False, guild_ready_timeout=0.1)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    try:
        async with bot:
            await bot.start(args.discord_token)
    finally:
        await services.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("api-base", "gateway", "discord-token", "sim-url", "sim-token", "db"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--guild", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
