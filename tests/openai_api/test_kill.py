"""kill -9 the bot while an OpenAI call streams, start it again: the call is made again once,
the member is charged once, the result is posted once, and the lost call is in the audit log."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from bot.openai_api.simulator import OpenAISimulator
from bot.store import audit
from bot.store.db import Database
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from tests.engine.crash_runner import GUILD
from tests.engine.test_crash import REPO, FakeChannel
from tests.openai_api.conftest import SIM_KEY
from tests.openai_api.kill_runner import MEMBER

PRICE = 65  # gpt-image-2 medium 1536x1024


async def runner(args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.openai_api.kill_runner",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.timeout(120)
async def test_kill_9_mid_stream_calls_again_once_and_charges_once(tmp_path):
    db_path = tmp_path / "kill.sqlite3"
    async with Database(db_path) as db:
        await db.write(Ledger(db).grant_in, GUILD, MEMBER, 1000, actor_id=None, reason="kill test")
    channel = FakeChannel()
    await channel.start()
    sim = OpenAISimulator(api_key=SIM_KEY, speed=0.002, seed=8, max_image_side=128)
    await sim.start()
    gate = sim.hold_final_images()  # the first call streams its previews, then waits
    args = [
        *("--db", str(db_path), "--sim-url", sim.base_url, "--sim-key", SIM_KEY),
        *("--publisher-url", channel.url),
    ]
    try:
        first = await runner(args)
        assert first.stdout is not None
        try:
            async with asyncio.timeout(60):
                while (line := await first.stdout.readline()) != b"preview\n":
                    assert line, "the runner exited before a preview"
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        assert sim.requests["generations"] == 1 and not channel.posts

        gate.set()
        second = await runner(args)
        _, err = await asyncio.wait_for(second.communicate(), timeout=60)
        assert second.returncode == 0, err.decode()[-3000:]
    finally:
        await sim.stop()
        assert channel.runner is not None
        await channel.runner.cleanup()

    assert sim.requests["generations"] == 2  # called again once, at the restart
    async with Database(db_path) as db:
        [job] = await JobStore(db).all()
        assert job.status.value == "done" and job.charged == PRICE
        assert channel.posts == {job.id: 1}
        [hold] = await db.fetchall("SELECT * FROM holds")
        assert (hold["amount"], hold["captured"], hold["released"]) == (PRICE, PRICE, 0)
        assert (await Ledger(db).balance(GUILD, MEMBER)).available == 1000 - PRICE
        [lost] = await audit.events(db, action="upstream.call_lost")
        assert lost.target == job.id and lost.details["reason"] == "restart"
        [usage] = await audit.events(db, action="upstream.usage")
        assert usage.target == job.id and usage.details["charged"] == PRICE
