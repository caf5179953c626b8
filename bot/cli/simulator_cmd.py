"""`python -m bot simulator`: run the loopback orchestrator on its own (demos, load tests)."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
from pathlib import Path

from bot.civitai.simulator import Outcome, Simulator


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("simulator", help="run the built-in orchestrator simulator alone")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--speed", type=float, default=1.0, help="time scale (0.1 = ten times faster)")
    p.add_argument("--token", default=None, help="the Bearer token to accept (default: random)")
    p.add_argument("--seed", type=int, default=None, help="seed for repeatable outcomes")
    p.add_argument("--max-image-side", type=int, default=None, help="cap placeholder images")
    p.add_argument(
        "--script",
        type=Path,
        help='JSON {"prompt text": {"kind": "succeed", "runtime": 20.0, "charge": null}, ...}',
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    sim = Simulator(
        token=args.token or secrets.token_urlsafe(16),
        speed=args.speed,
        seed=args.seed,
        max_image_side=args.max_image_side,
    )
    if args.script:
        for prompt, spec in json.loads(args.script.read_text()).items():
            sim.script(Outcome(**spec), prompt=prompt)
    url = await sim.start(args.host, args.port)
    print(json.dumps({"base_url": url, "token": sim.token}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()
    return 0
