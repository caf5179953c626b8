"""kill -9 the engine at random moments, restart it each time, and check the books balance.

At least 20 kills over at least 100 jobs; afterwards: every job final, every hold settled once
(capture + release = hold), every finished job posted exactly once, and per member
Σ ledger = Σ grants/refills − Σ what the simulator charged.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from bot.civitai.simulator import Outcome, Simulator
from bot.config import GuildDefaults
from bot.store.db import Conn, Database
from bot.store.guilds import GuildStore
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from tests.engine.crash_runner import GUILD, plan

JOBS = 120
KILLS = 22
REPO = Path(__file__).resolve().parents[2]
PRICE = 78  # gpt-image-2 medium 1024x1024


class FakeChannel:
    """Stands in for Discord: records each post the moment it arrives, outlives the engine."""

    def __init__(self) -> None:
        self.posts: Counter[str] = Counter()
        self.ids: dict[str, list[int]] = {}
        self.next_id = 1
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/deliver", self.deliver)
        app.router.add_get("/delivered/{job}", self.delivered)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def deliver(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts[body["job"]] += 1
        self.ids[body["job"]] = [self.next_id]
        self.next_id += 1
        return web.json_response({"ids": self.ids[body["job"]]})

    async def delivered(self, request: web.Request) -> web.Response:
        ids = self.ids.get(request.match_info["job"])
        return web.json_response({"ids": ids}, status=200 if ids else 404)


def script_outcomes(sim: Simulator, rng: random.Random) -> None:
    for _, prompt in plan(JOBS):
        roll = rng.random()
        if roll < 0.08:
            sim.script("block", prompt=prompt)
        elif roll < 0.14:
            sim.script("fail", prompt=prompt)
        elif roll < 0.18:
            sim.script("block_charged", prompt=prompt)
        elif roll < 0.22:
            sim.script(Outcome(charge=PRICE + 5), prompt=prompt)


async def run_engine(args: list[str], kill_after: float | None) -> int | None:
    """Start the runner; kill -9 it `kill_after` seconds after it reports started."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.engine.crash_runner",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    if kill_after is None:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=180)
        assert proc.returncode == 0, err.decode()[-3000:]
        return proc.returncode
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.strip() == b"started", (line, (await proc.stderr.read()).decode()[-3000:])
        await asyncio.sleep(kill_after)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    return proc.returncode


@pytest.mark.timeout(600)
async def test_kill_9_at_random_points_loses_nothing_and_charges_exactly(tmp_path):
    rng = random.Random(20261121)
    db_path = tmp_path / "crash.sqlite3"
    members = {member for member, _ in plan(JOBS)}
    async with Database(db_path) as db:
        ledger = Ledger(db)
        guilds = GuildStore(db, GuildDefaults())

        def setup(tx: Conn) -> None:
            guilds.update_in(tx, GUILD, per_member_concurrency=50, per_guild_concurrency=500)
            for member in members:
                ledger.grant_in(tx, GUILD, member, 20_000, actor_id=None, reason="crash test")

        await db.write(setup)
    channel = FakeChannel()
    await channel.start()
    sim = Simulator(speed=0.02, seed=11)
    await sim.start()
    script_outcomes(sim, rng)
    args = [
        *("--db", str(db_path), "--sim-url", sim.base_url, "--sim-token", sim.token),
        *("--publisher-url", channel.url, "--jobs", str(JOBS), "--pace", "0.08"),
    ]
    try:
        kills = 0
        for _ in range(KILLS):
            code = await run_engine(args, kill_after=rng.uniform(0.05, 0.5))
            kills += code == -signal.SIGKILL
        assert kills >= 20, f"only {kills} runs were killed mid-flight"
        await run_engine(args, kill_after=None)  # the last run finishes everything
    finally:
        await sim.stop()
        assert channel.runner is not None
        await channel.runner.cleanup()

    async with Database(db_path) as db:
        jobs = await JobStore(db).all(limit=10_000)
        assert len(jobs) == JOBS
        assert all(j.final for j in jobs), Counter(j.status.value for j in jobs)
        holds = await db.fetchall("SELECT * FROM holds")
        assert len(holds) == JOBS
        for hold in holds:
            assert hold["settled_at"] is not None
            assert hold["captured"] + hold["released"] == hold["amount"]
            assert hold["loss"] == 0
        done = [j for j in jobs if j.status.value == "done"]
        assert done and set(channel.posts) == {j.id for j in done}
        assert all(count == 1 for count in channel.posts.values()), channel.posts.most_common(3)
        for j in done:
            assert j.delivered_message_ids == channel.ids[j.id]
        # Each workflow once upstream, and the books match what the orchestrator charged.
        assert len(sim.submissions) == JOBS
        charged_by_member: Counter[int] = Counter()
        for j in jobs:
            wf = sim.workflow_for(j.id)
            assert wf is not None
            charged_by_member[j.member_id] += wf.net_charge(float("inf"))
            assert j.charged == wf.net_charge(float("inf"))
        ledger = Ledger(db)
        for member in members:
            entries = await db.fetchone(
                "SELECT SUM(delta_allowance + delta_grant), SUM(CASE WHEN kind IN"
                " ('grant', 'refill') THEN amount ELSE 0 END) FROM ledger_entries"
                " WHERE guild_id = ? AND member_id = ?",
                (GUILD, member),
            )
            balance = (await ledger.balance(GUILD, member)).available
            assert entries[0] == balance == entries[1] - charged_by_member[member]
        kinds = Counter(j.status.value for j in jobs)
        assert kinds["blocked"] and kinds["failed"] and kinds["done"]
