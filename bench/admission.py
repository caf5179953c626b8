"""Admission under a burst: members send /edit with big attachments and /create at once.

    python bench/admission.py [--edits 10] [--creates 10] [--source-size 1mb|4mb|4k]
                              [--source-format png|jpeg] [--rounds 3] [--create-interval 0.1]
                              [--runtime 15 20] [--no-warmup]

Three processes, so that each figure is measured where it happens:
- this one: the loopback fake Discord of tests/fakes (REST, gateway, CDN) acting as the
  members: each /edit carries a real attachment that the bot downloads from the fake's CDN;
- the REAL bot (bot.discord_adapter.bot.ImageBot built by bot.services.build_services, as
  tests/discord/harness.py builds it) in bench/botproc.py, so its peak RSS is its own;
- the orchestrator simulator (bench/simproc.py), which notes when each workflow's whole body
  arrived and renders photo-like results at the requested size.

Each round: E members send `/edit gpt-image-2` with a photo-like source at the same moment,
and C other members send `/create gpt-image-2`, one every --create-interval seconds from that
moment on, so the creates land while the edits are being downloaded, decoded, re-encoded and
submitted. Then the round waits for every result to be posted. Figures per round, reported as
the median over the rounds (and the range):
- /edit: interaction dispatched → workflow body received by the orchestrator, p50 / p99;
- /create: interaction dispatched → initial response received by Discord, p50 / p99 (and how
  many of the creates went out while at least one edit was still unsubmitted);
- the bot's peak RSS (VmHWM, reset at the start of each round) until every workflow was
  submitted, and over the whole round including delivery of the results;
- the bot's CPU time, and new TCP connections to the orchestrator per workflow.
All times are on CLOCK_MONOTONIC, which every process on the machine shares. A warm-up round
(one small edit and one create, not counted) runs first unless --no-warmup.
Simulated runtimes are --runtime LOW HIGH real seconds (default 15-20 s, the short end of the
guide's gpt-image-2 range), so no result comes back while a round's edits are admitted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SimProcess,
    cpu_seconds,
    median,
    peak_rss_mb,
    percentile,
    reset_peak,
    row,
    rss_mb,
    simulator,
    verdict,
)
from bench.images import SOURCE_SIZES, source_file  # noqa: E402
from tests.fakes import FakeDiscord, InteractionHandle  # noqa: E402

RESULT_FOOTER = "result of job "


@dataclass
class RoundResult:
    edit_submit: list[float] = field(default_factory=list)
    edit_first: list[float] = field(default_factory=list)
    create_first: list[float] = field(default_factory=list)
    create_submit: list[float] = field(default_factory=list)
    creates_during_prep: int = 0
    submit_bytes: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    rss_admission: float = math.nan
    rss_round: float = math.nan
    cpu: float = math.nan
    connections: int = 0
    workflows: int = 0
    undelivered: int = 0


@dataclass
class World:
    fake: FakeDiscord
    sim: SimProcess
    bot: subprocess.Popen[bytes]
    guild: int
    channel: int
    editors: list[int]
    creators: list[int]
    since: int = 0  # submissions already read from the simulator
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by prompt

    async def poll_submissions(self) -> None:
        stats = await asyncio.to_thread(self.sim.stats, self.since)
        self.since += len(stats["submissions"])
        for sub in stats["submissions"]:
            self.submissions[sub["prompt"]] = sub

    def delivered_jobs(self) -> set[str]:
        found = set()
        for message in self.fake.world.visible_history(self.channel):
            for embed in message.data.get("embeds") or []:
                text = (embed.get("footer") or {}).get("text") or ""
                if text.startswith(RESULT_FOOTER):
                    found.add(text[len(RESULT_FOOTER) :].split(" ", 1)[0])
        return found


PROGRESS = ("⏳", "✅", "⏸")  # the private answer while a request is prepared and admitted


def failed(world: World, handle: InteractionHandle) -> bool:
    """Refused: the private "thinking…" answer became a refusal with no public status message
    after it (or the public status message was taken down again)."""
    record = handle.record
    if record.rejections:
        return True
    if record.response is None:
        return False
    if record.followup_ids:
        return all(world.fake.is_deleted(i) for i in record.followup_ids)
    original = handle.original_message
    if original is None:
        return True
    text = original.get("content") or ""
    return bool(text) and not text.startswith(PROGRESS)


async def one_round(
    world: World,
    args: argparse.Namespace,
    number: int,
    edits: int,
    creates: int,
    source: tuple[str, bytes, str],
) -> RoundResult:
    fake, pid = world.fake, world.bot.pid
    result = RoundResult()
    await world.poll_submissions()
    before = await asyncio.to_thread(world.sim.stats, world.since)
    reset_peak(pid)
    cpu0 = cpu_seconds(pid)
    tag = f"bench r{number}"
    edit_prompts = [f"{tag} edit {i}: make it look like an autumn evening" for i in range(edits)]
    create_prompts = [f"{tag} create {i}: a lighthouse on a cliff" for i in range(creates)]

    async def edit(i: int) -> InteractionHandle:
        return await fake.slash(
            world.guild,
            world.channel,
            world.editors[i],
            "edit gpt-image-2",
            options={"prompt": edit_prompts[i], "quality": "low"},
            attachments={"image": source},
        )

    async def create(i: int) -> InteractionHandle:
        await asyncio.sleep(i * args.create_interval)
        return await fake.slash(
            world.guild,
            world.channel,
            world.creators[i],
            "create gpt-image-2",
            options={"prompt": create_prompts[i], "quality": "low"},
        )

    edit_tasks = [asyncio.create_task(edit(i)) for i in range(edits)]
    create_tasks = [asyncio.create_task(create(i)) for i in range(creates)]
    edit_handles = await asyncio.gather(*edit_tasks)
    create_handles = await asyncio.gather(*create_tasks)
    handles = dict(zip(edit_prompts + create_prompts, edit_handles + create_handles, strict=True))

    # Until every workflow is submitted (or its request visibly failed).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    while True:
        await world.poll_submissions()
        pending = [
            p for p, h in handles.items() if p not in world.submissions and not failed(world, h)
        ]
        if not pending or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    result.rss_admission = peak_rss_mb(pid)
    result.failed = [p for p, h in handles.items() if p not in world.submissions]

    for prompt, handle in handles.items():
        record = handle.record
        first = (
            record.response_at - record.dispatched_at if record.response_at is not None else None
        )
        sub = world.submissions.get(prompt)
        submitted = sub["received"] - record.dispatched_at if sub else None
        if prompt in edit_prompts:
            if first is not None:
                result.edit_first.append(first)
            if submitted is not None:
                result.edit_submit.append(submitted)
                result.submit_bytes.append(sub["bytes"])
        else:
            if first is not None:
                result.create_first.append(first)
            if submitted is not None:
                result.create_submit.append(submitted)
    edit_subs = [world.submissions[p]["received"] for p in edit_prompts if p in world.submissions]
    if edit_subs:
        last_edit = max(edit_subs)
        result.creates_during_prep = sum(
            1 for h in create_handles if h.record.dispatched_at < last_edit
        )

    # Until every submitted job's result is posted.
    jobs = {world.submissions[p]["external_id"] for p in handles if p in world.submissions}
    with contextlib.suppress(TimeoutError):
        await fake.wait_for(
            lambda: jobs <= world.delivered_jobs(),
            timeout=args.runtime[1] * 1.5 + args.timeout,
            what="every result of the round",
        )
    result.undelivered = len(jobs - world.delivered_jobs())
    result.rss_round = peak_rss_mb(pid)
    result.cpu = cpu_seconds(pid) - cpu0
    after = await asyncio.to_thread(world.sim.stats, world.since)
    result.connections = after["connections"] - before["connections"]
    result.workflows = after["workflows"] - before["workflows"]
    # Let trailing status edits land before the next round starts.
    await asyncio.sleep(1.0)
    return result


async def start_bot(fake: FakeDiscord, guild: int, sim: SimProcess, tmp: Path) -> Any:
    log = (tmp / "bot.log").open("w")
    process = subprocess.Popen(  # noqa: ASYNC220 (starting it takes milliseconds)
        [
            sys.executable,
            str(ROOT / "bench" / "botproc.py"),
            # NAME=VALUE: a random token may start with "-".
            f"--api-base={fake.api_base}",
            f"--gateway={fake.gateway_url}",
            f"--discord-token={fake.bot_token}",
            f"--guild={guild}",
            f"--sim-url={sim.base_url}",
            f"--sim-token={sim.token}",
            f"--db={tmp / 'bot.sqlite3'}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not (fake.gateway.connected and fake.commands.get(guild)):
        if process.poll() is not None or loop.time() > deadline:
            process.kill()
            raise SystemExit(
                f"the bot did not start; its log:\n{(tmp / 'bot.log').read_text()[-4000:]}"
            )
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # on_ready: the engine starts
    return process


async def stop_bot(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, 30)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait)


async def drive(args: argparse.Namespace, source: tuple[str, bytes, str]) -> dict[str, Any]:
    warm_source = source_file("1mb", seed=7)
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator("--runtime", *map(str, args.runtime), "--photo-results", "--seed", "1") as sim,
    ):
        async with FakeDiscord() as fake:
            guild = fake.add_guild("Bench")
            channel = fake.add_channel(guild, "art")
            editors = [fake.add_member(guild, f"editor{i}") for i in range(max(1, args.edits))]
            creators = [fake.add_member(guild, f"creator{i}") for i in range(max(1, args.creates))]
            bot = await start_bot(fake, guild, sim, Path(tmp))
            world = World(fake, sim, bot, guild, channel, editors, creators)
            idle_rss = rss_mb(bot.pid)
            try:
                if not args.no_warmup:
                    print("warm-up round (not counted)…", file=sys.stderr)
                    await one_round(world, args, 0, 1, 1, warm_source)
                rounds = []
                for number in range(1, args.rounds + 1):
                    print(f"round {number}/{args.rounds}…", file=sys.stderr)
                    rounds.append(
                        await one_round(world, args, number, args.edits, args.creates, source)
                    )
            finally:
                await stop_bot(bot)
            errors = [
                line
                for line in (Path(tmp) / "bot.log").read_text().splitlines()
                if " ERROR " in line or "Traceback" in line
            ]
    return {"rounds": rounds, "idle_rss": idle_rss, "errors": errors}


def spread(values: list[float], fmt: str) -> str:
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return "n/a"
    mid = fmt.format(median(clean))
    if len(clean) == 1:
        return mid
    return f"{mid} ({fmt.format(min(clean))}–{fmt.format(max(clean))})"


def report(args: argparse.Namespace, source: tuple[str, bytes, str], out: dict[str, Any]) -> None:
    rounds: list[RoundResult] = out["rounds"]
    name, data, _ = source
    width, height, _ = SOURCE_SIZES[args.source_size]
    print(
        f"\nadmission benchmark: {args.edits} x /edit gpt-image-2 with a {width}x{height} "
        f"{name.rsplit('.', 1)[1].upper()} source ({len(data) / 1e6:.2f} MB) + {args.creates} "
        f"x /create gpt-image-2 every {args.create_interval:g} s, {len(rounds)} round(s); "
        f"the real bot in its own process"
    )
    print("  per-round figures: median over the rounds (min–max)\n")

    def per_round(fn: Any) -> list[float]:
        return [fn(r) for r in rounds]

    edit_p50 = per_round(lambda r: percentile(r.edit_submit, 50))
    edit_p99 = per_round(lambda r: percentile(r.edit_submit, 99))
    create_p50 = per_round(lambda r: percentile(r.create_first, 50) * 1000)
    create_p99 = per_round(lambda r: percentile(r.create_first, 99) * 1000)
    rss_round = per_round(lambda r: r.rss_round)
    four_k = "" if args.source_size == "4k" else " (stated for 4k)"
    print(row("", "value", "target"))
    lines = [
        ("/edit: interaction -> workflow submitted p50 (s)", edit_p50, "{:.2f}", "< 1"),
        ("/edit: interaction -> workflow submitted p99 (s)", edit_p99, "{:.2f}", "< 2"),
        ("/create: first response p50 (ms)", create_p50, "{:.0f}", ""),
        ("/create: first response p99 (ms)", create_p99, "{:.0f}", "< 150"),
        (
            "/edit: first response (status message) p50 (ms)",
            per_round(lambda r: percentile(r.edit_first, 50) * 1000),
            "{:.0f}",
            "",
        ),
        (
            "/edit: first response (status message) p99 (ms)",
            per_round(lambda r: percentile(r.edit_first, 99) * 1000),
            "{:.0f}",
            "",
        ),
        (
            "/create: interaction -> workflow submitted p50 (s)",
            per_round(lambda r: percentile(r.create_submit, 50)),
            "{:.2f}",
            "",
        ),
        (
            "peak bot RSS until all were submitted (MB)",
            per_round(lambda r: r.rss_admission),
            "{:.0f}",
            "",
        ),
        ("peak bot RSS over the round, with delivery (MB)", rss_round, "{:.0f}", "< 400"),
        ("bot CPU per round (s)", per_round(lambda r: r.cpu), "{:.1f}", ""),
        (
            "/edit workflow body size (MB)",
            per_round(lambda r: median(r.submit_bytes) / 1e6 if r.submit_bytes else math.nan),
            "{:.2f}",
            "",
        ),
        (
            "new TCP connections to the orchestrator / workflow",
            per_round(lambda r: r.connections / r.workflows if r.workflows else math.nan),
            "{:.2f}",
            "",
        ),
    ]
    for label, values, fmt, target in lines:
        shown = f"{target} MB{four_k}" if label.startswith("peak bot RSS over") else target
        judged = verdict(median(values), target) if target else ""
        print(row(label, spread(values, fmt), shown, judged))
    during = sum(r.creates_during_prep for r in rounds)
    total = sum(len(r.create_first) for r in rounds)
    print(row("/create sent while an edit was still unsubmitted", f"{during}/{total}"))
    print(row("bot RSS at rest after start (MB)", f"{out['idle_rss']:.0f}"))
    failures = sum(len(r.failed) for r in rounds)
    undelivered = sum(r.undelivered for r in rounds)
    print(row("requests not submitted / results not posted", f"{failures} / {undelivered}"))
    if failures:
        print("    not submitted:", "; ".join(p for r in rounds for p in r.failed)[:600])
    if out["errors"]:
        print(f"  the bot logged {len(out['errors'])} error line(s), e.g. {out['errors'][0][:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edits", type=int, default=10, help="members sending /edit per round")
    parser.add_argument("--creates", type=int, default=10, help="members sending /create")
    parser.add_argument("--source-size", choices=sorted(SOURCE_SIZES), default="4mb")
    parser.add_argument(
        "--source-format",
        choices=("png", "jpeg"),
        default=None,
        help="default: PNG for 1mb/4mb, JPEG for 4k (a 4K PNG photo is ~17 MB)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--create-interval", type=float, default=0.1, help="seconds")
    parser.add_argument(
        "--runtime",
        type=float,
        nargs=2,
        default=(15.0, 20.0),
        metavar=("LOW", "HIGH"),
        help="simulated workflow runtime, real seconds",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per phase, seconds")
    parser.add_argument("--no-warmup", action="store_true")
    parser.epilog = __doc__
    args = parser.parse_args()
    fmt = {"png": "PNG", "jpeg": "JPEG", None: None}[args.source_format]
    started = time.perf_counter()
    source = source_file(args.source_size, seed=3, fmt=fmt)
    out = asyncio.run(drive(args, source))
    report(args, source, out)
    print(f"  (wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
