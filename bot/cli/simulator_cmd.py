"""`python -m bot simulator`: run the loopback orchestrator on its own (demos, load tests)."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
from pathlib import Path

from bot.civitai.simulator import Outcome, Simulator
from bot.cli.arguments import port, positive


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("simulator", help="run the built-in orchestrator simulator alone")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=0, help="0 picks a free port")
    p.add_argument(
        "--speed", type=positive, default=1.0, help="time scale (0.1 = ten times faster)"
    )
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
    try:
        scripted = _script(args.script) if args.script else {}
    except ValueError as exc:
        print(f"error: --script {args.script}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args, scripted))
    except OSError as exc:  # the port taken, an address not on this machine
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1


def _script(path: Path) -> dict[str, Outcome]:
    try:
        data = json.loads(path.read_text())
        return {prompt: Outcome(**spec) for prompt, spec in data.items()}
    except OSError as exc:
        raise ValueError(exc.strerror) from None
    except (AttributeError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f'not a JSON object of {{"prompt": {{"kind": ...}}}}: {exc}') from None


async def _serve(args: argparse.Namespace, scripted: dict[str, Outcome]) -> int:
    sim = Simulator(
        token=args.token or secrets.token_urlsafe(16),
        speed=args.speed,
        seed=args.seed,
        max_image_side=args.max_image_side,
    )
    for prompt, outcome in scripted.items():
        sim.script(outcome, prompt=prompt)
    url = await sim.start(args.host, args.port)
    print(json.dumps({"base_url": url, "token": sim.token}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()
    return 0
