"""Following 1 000 jobs in flight: long-poll (the engine's way) vs the Civitai docs' cadence.

    python bench/engine.py [--jobs 1000] [--speed 0.1] [--seed 1]

Each scenario runs the bot side in a fresh process against a simulator in another process (its
image rendering stays out of the bot's CPU and memory figures). Runtimes are drawn from the
guide's table and time-scaled by --speed; the simulator scales `wait=` the same way, and
latencies are reported in real-time-equivalent seconds (measured / speed).

Figures per scenario: orchestrator API requests per job (submit + get + cancel; blob downloads
listed apart), completion→detected latency p50/p95 (the workflow's completedAt to the moment the
bot holds the terminal answer), event-loop lag p99, peak RSS, and bot CPU per job.
Targets: ≤ 1.5 requests/job, detection p95 ≤ 1 s, loop lag p99 < 50 ms, RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.catalog import Model, Operation, RequestOptions  # noqa: E402
from bot.civitai.client import OrchestratorClient  # noqa: E402
from bot.civitai.models import Workflow  # noqa: E402
from bot.civitai.simulator import RUNTIMES  # noqa: E402
from bot.config import GuildDefaults, Settings  # noqa: E402
from bot.engine.engine import Engine, EngineSettings  # noqa: E402
from bot.engine.follow import LongPoll, Schedule  # noqa: E402
from bot.engine.requests import JobRequest, Requester  # noqa: E402
from bot.services import build_services  # noqa: E402

DOCS_CADENCE = (5, 10, 20, 30, 30, 60)
MODELS = [
    (Model.GPT_IMAGE_2, {"size": "1024x1024", "quality": "high"}, "gpt-image-2"),
    (Model.GPT_IMAGE_1_5, {"quality": "high"}, "gpt-image-1.5"),
    (Model.GPT_IMAGE_1, {"quality": "high"}, "gpt-image-1"),
    (Model.DALL_E_3, {"quality": "standard"}, "dall-e-3"),
    (Model.DALL_E_3, {"quality": "hd"}, "dall-e-3/hd"),
    (Model.DALL_E_2, {"size": "1024x1024"}, "dall-e-2"),
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- the bot side (a process of its own per scenario) ---------------------------------------
class MeasuringClient(OrchestratorClient):
    """Notes when the bot first holds each workflow's terminal answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.detected: dict[str, float] = {}

    def _note(self, workflow: Workflow) -> Workflow:
        if workflow.terminal and workflow.id and workflow.id not in self.detected:
            assert workflow.completed_at is not None
            self.detected[workflow.id] = time.time() - workflow.completed_at.timestamp()
        return workflow

    async def submit(self, template: dict[str, Any], **kw: Any) -> Workflow:
        return self._note(await super().submit(template, **kw))

    async def get(self, workflow_id: str, **kw: Any) -> Workflow:
        return self._note(await super().get(workflow_id, **kw))


class DiscardingPublisher:
    async def on_status(self, update: Any) -> None:
        return None

    async def find_delivery(self, job: Any) -> None:
        return None

    async def deliver(self, job: Any, images: list[Any]) -> list[int]:
        return [1]


async def loop_lag(samples: list[float], stop: asyncio.Event, interval: float = 0.01) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(interval)
        samples.append(time.perf_counter() - started - interval)


async def worker(args: argparse.Namespace, plan: list[dict[str, Any]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database={"path": Path(tmp) / "bench.sqlite3"},
            defaults=GuildDefaults(
                confirm_above=10**7, per_member_concurrency=50, per_guild_concurrency=10**4
            ),
        )
        services = await build_services(settings, base_url=args.sim_url, token=args.token)
        await services.client.aclose()
        client = MeasuringClient(args.sim_url, args.token, max_retries=8, retry_max_delay=1.0)
        policy = LongPoll(60) if args.policy == "longpoll" else Schedule(DOCS_CADENCE, args.speed)
        engine = Engine(
            db=services.db,
            jobs=services.jobs,
            ledger=services.ledger,
            guilds=services.guilds,
            moderation=services.moderation,
            client=client,
            publisher=DiscardingPublisher(),
            settings=EngineSettings(policy=policy, deadline=timedelta(hours=1)),
        )
        members = 50
        lag: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(loop_lag(lag, stop))
        try:
            for member in range(members):
                await services.db.write(
                    services.ledger.grant, 1, member, 10**6, actor_id=None, reason="bench"
                )
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
            for i, job in enumerate(plan):
                model, options, _ = MODELS[job["model"]]
                await engine.submit(
                    JobRequest(
                        Requester(1, 1, i % members),
                        model,
                        Operation.CREATE,
                        RequestOptions(prompt=job["prompt"], **options),
                        confirmed=True,
                    )
                )
            admitted = time.perf_counter() - wall0
            await engine.wait_idle()
            wall = time.perf_counter() - wall0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            done = (await services.db.fetchone("SELECT COUNT(*) FROM jobs WHERE status = 'done'"))[
                0
            ]
        finally:
            stop.set()
            await monitor
            await engine.stop()
            await client.aclose()
            await services.aclose()
    api = client.stats["submit"] + client.stats["get"] + client.stats["cancel"]
    latency = [v / args.speed for v in client.detected.values()]
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "policy": args.policy,
        "jobs": len(plan),
        "done": done,
        "api_requests_per_job": api / len(plan),
        "blob_downloads_per_job": client.stats["blob"] / len(plan),
        "detect_p50_s": percentile(latency, 50),
        "detect_p95_s": percentile(latency, 95),
        "loop_lag_p99_ms": percentile(lag, 99) * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_ms_per_job": cpu / len(plan) * 1000,
        "admission_s": admitted,
        "wall_s": wall,
    }


# -- the driver --------------------------------------------------------------------------
def make_plan(count: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(seed)
    plan, script = [], {}
    for i in range(count):
        index = rng.randrange(len(MODELS))
        low, high = RUNTIMES[MODELS[index][2]]
        prompt = f"bench job {i:05d} "
        plan.append({"prompt": prompt, "model": index})
        script[prompt] = {"kind": "succeed", "runtime": rng.uniform(low, high)}
    return plan, script


def run_scenario(policy: str, args: argparse.Namespace, plan: Path, script: Path) -> dict:
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot",
            "simulator",
            "--speed",
            str(args.speed),
            "--seed",
            str(args.seed),
            "--max-image-side",
            "64",
            "--script",
            str(script),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        info = json.loads(sim.stdout.readline())
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                "--policy",
                policy,
                "--sim-url",
                info["base_url"],
                "--token",
                info["token"],
                "--plan",
                str(plan),
                "--speed",
                str(args.speed),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise SystemExit(f"{policy} worker failed:\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        sim.terminate()
        sim.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="longpoll", help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        plan = json.loads(Path(args.plan).read_text())
        print(json.dumps(asyncio.run(worker(args, plan))))
        return
    plan, script = make_plan(args.jobs, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        plan_file, script_file = Path(tmp) / "plan.json", Path(tmp) / "script.json"
        plan_file.write_text(json.dumps(plan))
        script_file.write_text(json.dumps(script))
        results: dict[str, list[dict]] = {"longpoll": [], "docs": []}
        for _ in range(args.runs):
            for policy in results:
                results[policy].append(run_scenario(policy, args, plan_file, script_file))
    report(results, args)


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    rows = [
        ("API requests / job", "api_requests_per_job", "{:.2f}", "<= 1.5"),
        ("blob downloads / job", "blob_downloads_per_job", "{:.2f}", ""),
        ("detection p50 (real-time s)", "detect_p50_s", "{:.3f}", ""),
        ("detection p95 (real-time s)", "detect_p95_s", "{:.3f}", "<= 1.0"),
        ("event-loop lag p99 (ms)", "loop_lag_p99_ms", "{:.1f}", "< 50"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.1f}", "< 150"),
        ("bot CPU per job (ms)", "cpu_ms_per_job", "{:.2f}", ""),
        ("jobs done", "done", "{:.0f}", f"{args.jobs}"),
        ("wall time (s)", "wall_s", "{:.1f}", ""),
    ]
    print(
        f"engine benchmark: {args.jobs} jobs in flight, speed {args.speed} "
        f"(1 s real = {args.speed:g} s here), medians of {args.runs} run(s)"
    )
    print(f"{'':30} {'long-poll (ours)':>18} {'docs cadence':>14} {'target':>8}")
    for label, key, fmt, target in rows:
        ours = statistics.median(r[key] for r in results["longpoll"])
        peer = statistics.median(r[key] for r in results["docs"])
        print(f"{label:30} {fmt.format(ours):>18} {fmt.format(peer):>14} {target:>8}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
