"""`python -m bot …` exactly as an operator runs it, but talking to a loopback fake Discord.

The test process serves the fake; this runner points discord.py at it (FAKE_API_BASE,
FAKE_GATEWAY) and hands the command line to the bot's own entry point.
"""

from __future__ import annotations

import os
import sys

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.cli import main

if __name__ == "__main__":
    Route.BASE = os.environ["FAKE_API_BASE"]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_GATEWAY"])
    raise SystemExit(main(sys.argv[1:]))
