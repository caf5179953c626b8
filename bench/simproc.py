"""The orchestrator simulator in a process of its own, instrumented by the benchmarks.

    python bench/simproc.py [--speed 1] [--seed 1] [--runtime LOW HIGH | --min-runtime S]
                            [--photo-results] [--prerender WxH:FORMAT ...]

Prints one JSON line {"base_url", "token", "stats_url"} and serves until SIGTERM/SIGINT. It is
bot.civitai.simulator.Simulator with, from bench code only:

- every TCP connection its server accepts counted (the aiohttp server's connection_made is
  wrapped), so "new connections per job" is counted, not guessed from client ports;
- each submission's arrival noted on CLOCK_MONOTONIC (`time.monotonic()`, which is also what
  asyncio's loop.time() reads, and is one clock for every process on the machine): when its
  headers came in and when its whole body had been received, before any validation, with its
  externalId (the job id) and prompt;
- runtimes chosen by the benchmark: `--runtime LOW HIGH` (real seconds, before --speed) for
  every workflow, or `--min-runtime S`: the guide's table per model, raised to at least S;
- `--photo-results`: results are photo-like images of the requested size and format (a few
  variants per size, rendered once on a thread as soon as a workflow asks for that size) in
  place of the flat placeholders, which compress to almost nothing;
- `--prerender WxH:FORMAT ...`: those sizes' variants rendered before the simulator says it is
  ready. On a 2-core machine, rendering a 4K PNG's variants (seconds of CPU) while the bot admits
  its jobs would take the second core from the bot: the real orchestrator renders elsewhere.

GET {stats_url}?since=N answers {"connections", "requests", "workflows", "in_flight_peak",
"first_done", "last_created", "submissions": [from the N-th on]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.images import encode, photo  # noqa: E402
from bot.civitai.simulator import RUNTIMES, Simulator, SimWorkflow  # noqa: E402
from bot.civitai.simulator.blob_routes import BlobRoutes  # noqa: E402
from bot.civitai.simulator.responses import lose_answers  # noqa: E402
from bot.civitai.simulator.workflow_routes import WORKFLOWS, WorkflowRoutes  # noqa: E402

EXTERNAL_ID = re.compile(rb'"externalId"\s*:\s*"([^"]+)"')
PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webP": "WEBP"}
VARIANTS = 3


class BenchSimulator(Simulator):
    def __init__(
        self,
        *,
        runtime: tuple[float, float] | None = None,
        min_runtime: float | None = None,
        photo_results: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.min_runtime = min_runtime
        self.photo_results = photo_results
        self.connections = 0
        self.arrivals: list[dict[str, Any]] = []
        self._seen_external: set[str] = set()
        self._bench_rng = random.Random(kwargs.get("seed"))
        self._pool: dict[tuple[int, int, str, int], bytes] = {}
        self._rendering: set[tuple[int, int, str]] = set()
        self._side: set[asyncio.Task[Any]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # Simulator.start with one more middleware (arrivals) and a counted accept.
        app = web.Application(
            client_max_size=64 * 1024 * 1024, middlewares=[self._arrivals, lose_answers]
        )
        WorkflowRoutes(self).register(app)
        BlobRoutes(self).register(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = self.blobs.base_url = f"http://{host}:{bound}"
        server = self._runner.server
        assert server is not None
        made = server.connection_made

        def counting(handler: Any, transport: Any) -> None:
            self.connections += 1
            made(handler, transport)

        server.connection_made = counting  # type: ignore[method-assign]
        return self.base_url

    # -- submissions: when they arrived -------------------------------------------------------
    @web.middleware
    async def _arrivals(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "POST" or request.path != WORKFLOWS:
            return await handler(request)
        arrived = time.monotonic()
        body = await request.read()  # cached: the route's own request.json() reuses it
        received = time.monotonic()
        response = await handler(request)
        if request.query.get("whatif", "false").lower() == "true" or response.status >= 300:
            return response
        match = EXTERNAL_ID.search(body, max(0, len(body) - 512)) or EXTERNAL_ID.search(body)
        external_id = match.group(1).decode() if match else None
        if external_id and external_id not in self._seen_external:
            self._seen_external.add(external_id)
            wf = self.workflow_for(external_id)
            first = wf.steps[0] if wf and wf.steps else None
            blob = first.plan.blobs[0] if first and first.plan.blobs else None
            self.arrivals.append(
                {
                    "external_id": external_id,
                    "prompt": first.template.get("input", {}).get("prompt", "") if first else "",
                    "arrived": arrived,
                    "received": received,
                    "bytes": len(body),
                    "width": blob.width if blob else None,
                    "height": blob.height if blob else None,
                }
            )
        return response

    # -- runtimes and photo-like results --------------------------------------------------
    def create(self, template: dict[str, Any], plans: list[Any]) -> SimWorkflow:
        wf = super().create(template, plans)
        runtime = self._runtime(template)
        if runtime is not None and wf.outcome.runtime is None:
            wf.t_done = wf.t_processing + runtime * self.speed
        if self.photo_results:
            for step in wf.steps:
                for blob_id, plan in zip(step.blob_ids, step.plan.blobs, strict=True):
                    record = self.blobs.get(blob_id)
                    if record is not None and record.render is not None:
                        record.render = self._renderer(blob_id, plan.width, plan.height, plan.fmt)
        return wf

    def _runtime(self, template: dict[str, Any]) -> float | None:
        if self.runtime is not None:
            low, high = self.runtime
        elif self.min_runtime is not None:
            step = template["steps"][0]["input"]
            key = step.get("model", "gpt-image-2")
            if key == "dall-e-3" and step.get("quality") == "hd":
                key = "dall-e-3/hd"
            low, high = RUNTIMES.get(key, (15, 45))
            low, high = max(low, self.min_runtime), max(high, self.min_runtime + 5)
        else:
            return None
        return self._bench_rng.uniform(low, high)

    def _renderer(self, blob_id: str, width: int, height: int, fmt: str) -> Any:
        key = (width, height, fmt)
        if key not in self._rendering:
            # Render this size's variants on a thread now, long before the result is fetched.
            self._rendering.add(key)
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._render_pool, *key)
            )
            self._side.add(task)
            task.add_done_callback(self._side.discard)
        variant = hash(blob_id) % VARIANTS

        def render(_w: int, _h: int) -> bytes:
            pooled = (width, height, fmt, variant)
            if pooled not in self._pool:  # not rendered yet: render it now (on the caller)
                self._pool[pooled] = self._render_one(width, height, fmt, variant)
            return self._pool[pooled]

        return render

    def prerender(self, width: int, height: int, fmt: str) -> None:
        self._rendering.add((width, height, fmt))
        self._render_pool(width, height, fmt)

    def _render_pool(self, width: int, height: int, fmt: str) -> None:
        for variant in range(VARIANTS):
            key = (width, height, fmt, variant)
            if key not in self._pool:
                self._pool[key] = self._render_one(width, height, fmt, variant)

    @staticmethod
    def _render_one(width: int, height: int, fmt: str, variant: int) -> bytes:
        image = photo(width, height, seed=1000 + variant)
        options = {} if fmt == "png" else {"quality": 90}
        return encode(image, PIL_FORMAT.get(fmt, "JPEG"), **options)

    # -- figures -----------------------------------------------------------------------------
    def stats(self, since: int = 0) -> dict[str, Any]:
        events: list[tuple[float, int]] = []
        done_times = []
        for wf in self.workflows.values():
            events.append((wf.t0, 1))
            end = wf.finished_at()
            events.append((end, -1))
            done_times.append(end)
        events.sort()
        running = peak = 0
        now = time.monotonic()
        for at, change in events:
            if at > now:
                break
            running += change
            peak = max(peak, running)
        return {
            "connections": self.connections,
            "requests": dict(self.requests),
            "workflows": len(self.workflows),
            "in_flight_peak": peak,
            "first_done": min(done_times) if done_times else None,
            "last_created": max((wf.t0 for wf in self.workflows.values()), default=None),
            "submissions": self.arrivals[since:],
        }


async def serve(args: argparse.Namespace) -> None:
    sim = BenchSimulator(
        token=args.token or secrets.token_urlsafe(16),
        speed=args.speed,
        seed=args.seed,
        runtime=tuple(args.runtime) if args.runtime else None,
        min_runtime=args.min_runtime,
        photo_results=args.photo_results,
    )
    for spec in args.prerender or []:
        size, fmt = spec.split(":")
        width, height = (int(n) for n in size.split("x"))
        sim.prerender(width, height, fmt)
    url = await sim.start(args.host, 0)

    async def stats(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.json_response(sim.stats(since))

    app = web.Application()
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, 0)
    await site.start()
    stats_port = runner.addresses[0][1]
    print(
        json.dumps(
            {
                "base_url": url,
                "token": sim.token,
                "stats_url": f"http://{args.host}:{stats_port}/stats",
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=None)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runtime", type=float, nargs=2, metavar=("LOW", "HIGH"))
    parser.add_argument("--min-runtime", type=float, default=None)
    parser.add_argument("--photo-results", action="store_true")
    parser.add_argument("--prerender", nargs="*", metavar="WxH:FORMAT")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
