"""Following N jobs really in flight at once, with the engine's long-poll (and optionally the
Civitai docs' polling cadence side by side).

    python bench/engine.py [--jobs 3000] [--min-runtime 30] [--large-share 0.02]
                           [--admit-concurrency 100] [--speed 1] [--compare-docs] [--runs 1]

The bot side runs in a fresh process per scenario (bench/engine.py --worker): the services from
bot.services.build_services, the real Engine, and the bot's own publisher (the adapter's
DiscordPublisher: coalesced status edits that read the ledger, results fitted to the 10 MiB
upload limit with bot.media.fit_for_upload on a thread, split into messages) with only the HTTP
request to Discord left out: each status edit's JSON is encoded, counted and dropped, and each
result post's multipart body is read as aiohttp would send it (64 KiB at a time) and counted.
The orchestrator is bench/simproc.py in another process (its rendering stays out of the bot's
CPU and memory, and is done before admission starts): results are photo-like images of the
requested size and format (not 64-pixel placeholders), and it counts the TCP connections it
accepts.

All N jobs are admitted concurrently (--admit-concurrency at a time, as members' interactions
arrive) and every simulated runtime is the guide's range for the model raised to at least
--min-runtime seconds, so all N are admitted before the first one finishes; the report gives
the real peak in flight (workflows running upstream at the same moment, from the simulator's
clock) next to N, and says if admission did not beat the first completion. --large-share of
the jobs ask for 3840x2160 PNG, which must be re-encoded to fit.

Figures: orchestrator API calls per job (submit + get + cancel; blob downloads apart), new TCP
connections the orchestrator accepted per job, completion detection p50/p95 (the workflow's
completedAt to the moment the bot holds the terminal answer), event-loop lag p99 (a 10 ms
ticker), the bot's peak RSS and CPU per job. --speed < 1 time-scales runtimes and wait= alike;
latencies are then printed as measured (not divided by the speed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import percentile, row, simulator, verdict  # noqa: E402
from bot.catalog import Model, Operation, RequestOptions  # noqa: E402

DOCS_CADENCE = (5, 10, 20, 30, 30, 60)
MODELS = [
    (Model.GPT_IMAGE_2, {"size": "1024x1024", "quality": "high"}),
    (Model.GPT_IMAGE_1_5, {"quality": "high"}),
    (Model.GPT_IMAGE_1, {"quality": "high"}),
    (Model.DALL_E_3, {"quality": "standard"}),
    (Model.DALL_E_3, {"quality": "hd"}),
    (Model.DALL_E_2, {"size": "1024x1024"}),
]
LARGE = (Model.GPT_IMAGE_2, {"size": "3840x2160", "quality": "high", "format": "png"})
UPLOAD_LIMIT = 10 * 1024 * 1024
GUILD, CHANNEL = 1, 1


# -- the bot side (a process of its own per scenario) ---------------------------------------
def encoding_publisher(services: Any, settings: Any) -> Any:
    from discord.http import handle_message_parameters

    from bot.discord_adapter.buttons.result import result_view
    from bot.discord_adapter.embeds import result_embed
    from bot.discord_adapter.files import MemoryFile
    from bot.discord_adapter.publisher import DiscordPublisher

    class NoDiscord:
        """What the publisher asks of the bot when it does not talk to Discord."""

        user = None
        application_id = 1

        def get_guild(self, guild_id: int) -> None:
            return None

    class EncodingPublisher(DiscordPublisher):
        """The bot's publisher with the request to Discord replaced by encoding its body."""

        def __init__(self) -> None:
            super().__init__(
                NoDiscord(),  # type: ignore[arg-type]
                services.ledger,
                services.guilds,
                images=services.images,
                edit_interval=settings.jobs.status_edit_interval_seconds,
                clock=services.clock,
            )
            self.counts = {"status_edits": 0, "status_bytes": 0, "posts": 0, "post_bytes": 0}
            self.fitted = {"images": 0, "reencoded": 0}
            self._ids = count(10**15)
            # Status edits go through the routes (interaction webhook, else the channel).
            self.routes.edit = self._encode_edit  # type: ignore[method-assign]

        async def _encode_edit(
            self,
            job: Any,
            message_id: int | None,
            embed: Any,
            view: Any,
            files: Any = None,
            content: str | None = None,
        ) -> None:
            payload: dict[str, Any] = {"embeds": [embed.to_dict()]}
            if content is not None:
                payload["content"] = content
            payload["components"] = view.to_components() if view is not None else []
            body = json.dumps(payload).encode()
            self.counts["status_edits"] += 1
            self.counts["status_bytes"] += len(body)
            if view is not None:
                view.stop()

        async def _post(
            self,
            job: Any,
            chunk: list[Any],
            part: tuple[int, int],
            covered: int,
            private: bool = False,
        ) -> int:
            first_n, first = chunk[0]
            name = f"{job.id}-{first_n + 1}.{first.extension}"
            embed = result_embed(job, [f for _, f in chunk], name, part, covered)
            view = result_view(job, self.tools)
            files = [MemoryFile(f.data, f"{job.id}-{n + 1}.{f.extension}") for n, f in chunk]
            with handle_message_parameters(embed=embed, view=view, files=files) as params:
                size = multipart(params.multipart or [])
            view.stop()
            self.counts["posts"] += 1
            self.counts["post_bytes"] += size
            self.fitted["images"] += len(chunk)
            self.fitted["reencoded"] += sum(1 for _, f in chunk if f.note)
            return next(self._ids)

    return EncodingPublisher()


def multipart(parts: list[dict[str, Any]]) -> int:
    """The length of the multipart/form-data body discord.py would send for these parts, read
    as aiohttp sends it: file parts in 64 KiB chunks, never joined into one copy."""
    boundary = b"benchboundary7f3a"
    size = 0
    for part in parts:
        head = f'Content-Disposition: form-data; name="{part["name"]}"'
        if part.get("filename"):
            head += f'; filename="{part["filename"]}"'
        kind = part.get("content_type") or "application/json"
        size += len(b"--" + boundary + b"\r\n" + head.encode() + b"\r\nContent-Type: ")
        size += len(kind.encode()) + 4
        value = part["value"]
        if hasattr(value, "read"):
            while chunk := value.read(2**16):
                size += len(chunk)
        else:
            size += len(value.encode() if isinstance(value, str) else value)
        size += 2
    return size + len(b"--" + boundary + b"--\r\n")


def instrument(client: Any, detected: dict[str, float], flight: dict[str, Any]) -> None:
    """Note, on the bot's own client, when it first holds each workflow's terminal answer and
    how many jobs it is following at once (from sending the submit to holding the end)."""
    submit, get = client.submit, client.get
    live: set[str] = flight["live"]
    job_of: dict[str, str] = {}

    def note(workflow: Any) -> Any:
        if workflow.id and workflow.terminal:
            if "first_detect" not in flight:
                # The end of the "all in flight" phase: what did following them cost?
                flight["first_detect"] = time.monotonic()
                flight["rss_in_flight"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            live.discard(job_of.pop(workflow.id, ""))
            if workflow.id not in detected and workflow.completed_at is not None:
                detected[workflow.id] = time.time() - workflow.completed_at.timestamp()
        return workflow

    async def measured_submit(template: dict[str, Any], **kw: Any) -> Any:
        if kw.get("whatif"):
            return await submit(template, **kw)
        job_id = template["externalId"]
        live.add(job_id)
        flight["peak"] = max(flight["peak"], len(live))
        workflow = await submit(template, **kw)
        if workflow.id:
            job_of[workflow.id] = job_id
        return note(workflow)

    async def measured_get(workflow_id: str, **kw: Any) -> Any:
        return note(await get(workflow_id, **kw))

    client.submit, client.get = measured_submit, measured_get


async def loop_lag(
    samples: list[tuple[float, float]], stop: asyncio.Event, interval: float = 0.01
) -> None:
    """(when, how late) for a 10 ms ticker: how long the loop could not run anything."""
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(interval)
        now = time.monotonic()
        samples.append((now, now - started - interval))


def lag_p99_ms(samples: list[tuple[float, float]], start: float, end: float) -> float:
    return percentile([lag for at, lag in samples if start <= at < end], 99) * 1000


async def worker(args: argparse.Namespace, plan: list[dict[str, Any]]) -> dict[str, Any]:
    from dataclasses import replace

    from bot.config import Settings
    from bot.engine.follow import Schedule
    from bot.engine.requests import JobRequest, Refusal, Requester
    from bot.memory_tuning import tune_memory
    from bot.services import build_services

    members = max(50, math.ceil(len(plan) / 40))  # per-member concurrency is at most 50
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database={"path": Path(tmp) / "bench.sqlite3"},
            defaults={
                "allowance": 10_000_000,
                "allowance_period": "weekly",
                "confirm_above": 10_000_000,
                "per_member_concurrency": 50,
                "per_guild_concurrency": 10_000,
            },
        )
        services = await build_services(settings, base_url=args.sim_url, token=args.token)
        tune_memory()  # as `python -m bot run` does
        detected: dict[str, float] = {}
        flight: dict[str, Any] = {"live": set(), "peak": 0}
        instrument(services.client, detected, flight)
        publisher = encoding_publisher(services, settings)
        engine_settings = services.engine_settings()
        if args.policy == "docs":
            engine_settings = replace(engine_settings, policy=Schedule(DOCS_CADENCE, args.speed))
        engine = services.engine(publisher, settings=engine_settings)
        await engine.start()
        lag: list[tuple[float, float]] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(loop_lag(lag, stop))
        gate = asyncio.Semaphore(args.admit_concurrency)
        refused: list[str] = []
        status_ids = count(10**12)

        async def admit(i: int, job: dict[str, Any]) -> None:
            model, options = LARGE if job["large"] else MODELS[job["model"]]
            request = JobRequest(
                Requester(GUILD, CHANNEL, 1000 + i % members),
                model,
                Operation.CREATE,
                RequestOptions(prompt=job["prompt"], **options),
                confirmed=True,
                upload_limit=UPLOAD_LIMIT,
            )
            async with gate:
                try:
                    # As the Discord flow does: admitted first, then shown, then started.
                    admitted = await engine.submit(request, launch=False)
                    await engine.launch(admitted, next(status_ids))
                except Refusal as exc:
                    refused.append(str(exc))

        try:
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
            admit_start = time.monotonic()
            await asyncio.gather(*(admit(i, job) for i, job in enumerate(plan)))
            admit_end = time.monotonic()
            await engine.wait_idle()
            end = time.monotonic()
            wall = time.perf_counter() - wall0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            counts = {
                status: n
                for status, n in await services.db.fetchall(
                    "SELECT status, COUNT(*) FROM jobs GROUP BY status"
                )
            }
        finally:
            stop.set()
            await monitor
            await engine.stop()
            await publisher.close()
            await services.aclose()
    stats = services.client.stats
    first_detect = flight.get("first_detect", end)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "jobs": len(plan),
        "counts": counts,
        "refused": refused[:5],
        "api": stats["submit"] + stats["get"] + stats["cancel"],
        "requests": dict(stats),
        "detect": list(detected.values()),
        "lag_p99_ms": lag_p99_ms(lag, admit_start, end),
        "lag_phases_ms": [
            lag_p99_ms(lag, admit_start, admit_end),
            lag_p99_ms(lag, admit_end, first_detect),
            lag_p99_ms(lag, first_detect, end),
        ],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_in_flight_mb": flight.get("rss_in_flight", math.nan * 1024) / 1024,
        "cpu_s": cpu,
        "admit_start": admit_start,
        "admit_end": admit_end,
        "bot_peak_following": flight["peak"],
        "wall_s": wall,
        "publisher": {**publisher.counts, **publisher.fitted},
    }


# -- the driver --------------------------------------------------------------------------
def make_plan(count_: int, seed: int, large_share: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "prompt": f"bench job {i:05d}: a harbour at dawn, oil painting",
            "model": rng.randrange(len(MODELS)),
            "large": rng.random() < large_share,
        }
        for i in range(count_)
    ]


def run_scenario(policy: str, args: argparse.Namespace, plan_file: Path) -> dict[str, Any]:
    options = ["--speed", str(args.speed), "--seed", str(args.seed)]
    options += ["--min-runtime", str(args.min_runtime), "--photo-results"]
    # Rendered before admission starts: the orchestrator's rendering is not the bot's CPU.
    options += ["--prerender", "1024x1024:jpeg", "3840x2160:png"]
    with simulator(*options) as sim:
        command = [sys.executable, __file__, "--worker", "--policy", policy]
        # NAME=VALUE: a random token may start with "-".
        command += [f"--sim-url={sim.base_url}", f"--token={sim.token}", f"--plan={plan_file}"]
        command += ["--speed", str(args.speed), "--admit-concurrency", str(args.admit_concurrency)]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{policy} worker failed:\n{out.stderr[-4000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        upstream = sim.stats(since=10**9)  # no submission list: only the counters
    result["connections"] = upstream["connections"]
    result["in_flight_peak"] = upstream["in_flight_peak"]
    result["first_done"] = upstream["first_done"]
    result["workflows"] = upstream["workflows"]
    result["errors"] = [line for line in out.stderr.splitlines() if "Traceback" in line][:3]
    return result


def summarize(r: dict[str, Any]) -> dict[str, float]:
    jobs = r["jobs"]
    first_done = r["first_done"] or math.inf
    return {
        "peak_in_flight": r["in_flight_peak"],
        "bot_peak_following": r["bot_peak_following"],
        "admission_s": r["admit_end"] - r["admit_start"],
        "first_done_s": first_done - r["admit_start"],
        "admitted_first": float(r["admit_end"] < first_done),
        "api_per_job": r["api"] / jobs,
        "blob_per_job": r["requests"].get("blob", 0) / jobs,
        "conn_per_job": r["connections"] / jobs,
        "detect_p50": percentile(r["detect"], 50),
        "detect_p95": percentile(r["detect"], 95),
        "lag_p99": r["lag_p99_ms"],
        "lag_admission": r["lag_phases_ms"][0],
        "lag_in_flight": r["lag_phases_ms"][1],
        "lag_ending": r["lag_phases_ms"][2],
        "rss": r["peak_rss_mb"],
        "rss_in_flight": r["rss_in_flight_mb"],
        "cpu_ms_per_job": r["cpu_s"] / jobs * 1000,
        "done": r["counts"].get("done", 0),
        "status_edits_per_job": r["publisher"]["status_edits"] / jobs,
        "reencoded": r["publisher"]["reencoded"],
        "post_mb": r["publisher"]["post_bytes"] / 1e6,
        "wall": r["wall_s"],
    }


ROWS = [
    ("jobs really in flight at once (upstream peak)", "peak_in_flight", "{:.0f}", "= N"),
    ("workflows the bot followed at once (peak)", "bot_peak_following", "{:.0f}", ""),
    ("admission of all N (s)", "admission_s", "{:.1f}", ""),
    ("first workflow finished after (s)", "first_done_s", "{:.1f}", ""),
    ("all admitted before the first finished (1 = yes)", "admitted_first", "{:.0f}", ""),
    ("orchestrator API calls / job", "api_per_job", "{:.3f}", "<= 1.05"),
    ("blob downloads / job", "blob_per_job", "{:.2f}", ""),
    ("new TCP connections to the orchestrator / job", "conn_per_job", "{:.3f}", "<= 1"),
    ("completion detected p50 (s)", "detect_p50", "{:.3f}", ""),
    ("completion detected p95 (s)", "detect_p95", "{:.3f}", "< 0.5"),
    ("event-loop lag p99, whole run (ms)", "lag_p99", "{:.1f}", "< 20"),
    ("  during admission (ms)", "lag_admission", "{:.1f}", ""),
    ("  all in flight, before the first ended (ms)", "lag_in_flight", "{:.1f}", ""),
    ("  while they end and are delivered (ms)", "lag_ending", "{:.1f}", ""),
    ("peak RSS of the bot process, whole run (MB)", "rss", "{:.0f}", "< 150"),
    ("  peak RSS until the first ended (MB)", "rss_in_flight", "{:.0f}", ""),
    ("bot CPU per job (ms)", "cpu_ms_per_job", "{:.2f}", ""),
    ("status edits encoded / job", "status_edits_per_job", "{:.2f}", ""),
    ("results re-encoded to fit 10 MiB", "reencoded", "{:.0f}", ""),
    ("result uploads encoded (MB)", "post_mb", "{:.0f}", ""),
    ("jobs done", "done", "{:.0f}", ""),
    ("wall time (s)", "wall", "{:.1f}", ""),
]


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print(
        f"\nengine benchmark: N = {args.jobs} jobs admitted at once, runtimes >= "
        f"{args.min_runtime:g} s, {args.large_share:.0%} of them 3840x2160 PNG, speed "
        f"{args.speed:g}, median of {args.runs} run(s)"
    )
    summaries = {p: [summarize(r) for r in runs] for p, runs in results.items()}
    peers = [p for p in summaries if p != "longpoll"]
    header = f"  {'':52} {'long-poll':>16}   {'target':<14} "
    if peers:
        header += f"{'docs cadence':>14}"
    print(header)
    for label, key, fmt, target in ROWS:
        ours = statistics.median(s[key] for s in summaries["longpoll"])
        judged = verdict(ours, target) if target.startswith("<") else ""
        if key == "peak_in_flight":
            target = f"= {args.jobs}"
            judged = "yes" if ours >= args.jobs else "NO: fewer than N"
        line = row(label, fmt.format(ours), target, judged)
        for peer in peers:
            theirs = statistics.median(s[key] for s in summaries[peer])
            line = f"{line:<95} {fmt.format(theirs):>14}"
        print(line)
    for runs in results.values():
        for r in runs:
            if r["refused"] or r["errors"]:
                print(f"  refused: {r['refused']}  errors: {r['errors']}")
            if r["counts"].get("done", 0) != r["jobs"]:
                print(f"  job states at the end: {r['counts']}")
    first = summaries["longpoll"][0]
    if not first["admitted_first"]:
        print(
            "  WARNING: the first workflow finished before admission ended; raise --min-runtime"
            " so that all N are in flight together"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument(
        "--min-runtime", type=float, default=30.0, help="shortest simulated runtime, real s"
    )
    parser.add_argument(
        "--large-share", type=float, default=0.02, help="share of 3840x2160 PNG results"
    )
    parser.add_argument("--admit-concurrency", type=int, default=100)
    parser.add_argument("--speed", type=float, default=1.0, help="time scale of the simulator")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    parser.add_argument(
        "--compare-docs", action="store_true", help="also run the docs' polling cadence"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="longpoll", help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.epilog = __doc__
    args = parser.parse_args()
    if args.worker:
        import logging

        logging.basicConfig(level=logging.WARNING)
        plan = json.loads(Path(args.plan).read_text())
        print(json.dumps(asyncio.run(worker(args, plan))))
        return
    plan = make_plan(args.jobs, args.seed, args.large_share)
    policies = ["longpoll", "docs"] if args.compare_docs else ["longpoll"]
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in policies}
    with tempfile.TemporaryDirectory() as tmp:
        plan_file = Path(tmp) / "plan.json"
        plan_file.write_text(json.dumps(plan))
        for run in range(args.runs):
            for policy in policies:
                print(f"run {run + 1}/{args.runs}: {policy}…", file=sys.stderr)
                results[policy].append(run_scenario(policy, args, plan_file))
    report(results, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
