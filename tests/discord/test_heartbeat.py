"""The running bot writes the heartbeat that `python -m bot health` (the Docker HEALTHCHECK)
reads."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3

from bot import heartbeat
from bot.discord_adapter.bot import ImageBot
from bot.heartbeat import heartbeat_path, problems
from bot.store import db as dbmod
from tests.discord.harness import world
from tests.store.read_only import write_locked


async def test_a_connected_bot_writes_a_ready_heartbeat(tmp_path):
    async with world(tmp_path) as w:
        path = heartbeat_path(w.settings.database.path)
        async with asyncio.timeout(10):
            while not (path.exists() and json.loads(path.read_text()).get("ready")):
                await asyncio.sleep(0.05)
        beat = json.loads(path.read_text())
        assert beat["guilds"] == 1 and beat["jobs_running"] == 0


async def test_a_stopped_bot_says_so_at_once(tmp_path):
    async with world(tmp_path) as w:
        path = heartbeat_path(w.settings.database.path)
        async with asyncio.timeout(10):
            while not (path.exists() and json.loads(path.read_text()).get("ready")):
                await asyncio.sleep(0.05)
    beat = json.loads(path.read_text())
    assert beat["stopped"] is True and beat["ready"] is False
    found, _ = problems(path)
    assert found and "stopped" in found[0]


async def test_a_bot_cut_off_from_discord_is_unhealthy_until_it_is_back(tmp_path):
    """discord.py keeps is_ready() set while it reconnects: the heartbeat said "ready" through
    a whole outage, so `python -m bot health` (the container's HEALTHCHECK) stayed healthy and
    its "not connected to Discord" could never show after the first connection."""
    async with world(tmp_path) as w:
        path = heartbeat_path(w.settings.database.path)

        async def beat_says(ready: bool) -> None:
            async with asyncio.timeout(10):
                while not (path.exists() and json.loads(path.read_text()).get("ready") is ready):
                    await asyncio.sleep(0.05)

        await beat_says(True)
        await w.fake.gateway.outage()
        try:
            await beat_says(False)
            found, _ = problems(path)
            assert found == ["the bot is running but not connected to Discord"]
        finally:
            w.fake.gateway.down = False
        await beat_says(True)
        assert problems(path)[0] == []


async def test_a_sharded_bot_writes_a_ready_heartbeat(tmp_path):
    async with world(tmp_path, discord={"shard_count": 2}) as w:
        path = heartbeat_path(w.settings.database.path)
        async with asyncio.timeout(10):
            while not (path.exists() and json.loads(path.read_text()).get("ready")):
                await asyncio.sleep(0.05)
        assert problems(path)[0] == []


async def test_a_database_file_replaced_under_an_idle_bot_is_found_and_told(tmp_path, monkeypatch):
    """Nobody asks for anything after the operator restores a backup over the live database:
    the bot stayed healthy, and the owner learnt nothing until members' Buzz went missing.
    Each heartbeat looks: health turns unhealthy naming it, and the owner is told by DM."""
    monkeypatch.setattr(heartbeat, "EVERY", 0.05)
    async with world(tmp_path) as w:
        path = heartbeat_path(w.settings.database.path)
        async with asyncio.timeout(10):
            while not (path.exists() and json.loads(path.read_text()).get("ready")):
                await asyncio.sleep(0.05)
        other = tmp_path / "restored.sqlite3"
        sqlite3.connect(other).close()
        os.replace(other, w.settings.database.path)
        async with asyncio.timeout(10):
            while json.loads(path.read_text()).get("ready"):
                await asyncio.sleep(0.05)
        found, _ = problems(path)
        assert len(found) == 1 and "was replaced" in found[0], found
        said = await w.fake.wait_for(
            lambda: [
                m["content"]
                for m in w.fake.dm_messages(w.fake.owner_user.id)
                if "replaced" in m["content"]
            ],
            what="the owner told",
        )
        assert len(said) == 1 and "orphaned" in said[0], said
        [kept] = tmp_path.glob("bot.sqlite3.orphaned-*")
        assert str(kept) in said[0]


async def test_a_start_waiting_for_the_database_says_so(tmp_path, monkeypatch, caplog):
    """The start meets an operator's sqlite3 shell holding the write lock and waits: health
    said "the bot stopped at …" (the last run's beat) while it ran, and the operator went
    looking for a stopped bot instead of the shell."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)  # 10 s in production
    monkeypatch.setattr(ImageBot, "start_retry", 0.05)
    async with world(tmp_path) as w:
        path = heartbeat_path(w.settings.database.path)
        with write_locked(tmp_path / "bot.sqlite3"):
            restarting = asyncio.create_task(w.restart_bot())
            async with asyncio.timeout(10):
                while "waiting to start" not in path.read_text():
                    await asyncio.sleep(0.05)
            found, _ = problems(path)
            assert len(found) == 1 and "waiting to start" in found[0], found
            assert "another process holds its write lock" in found[0]
        await asyncio.wait_for(restarting, 30)
        async with asyncio.timeout(10):
            while problems(path)[0]:
                await asyncio.sleep(0.05)


def test_a_bot_that_died_with_a_problem_is_reported_dead(tmp_path):
    """Killed while it waited to start (an OOM, a SIGKILL), the bot leaves its last beat with
    that problem in it: health must say the heartbeat is old, not send the operator looking
    for a lock holder while nothing runs."""
    path = tmp_path / "bot.heartbeat"
    old = heartbeat.utcnow() - heartbeat.STALE_AFTER * 3
    beat = heartbeat.Beat(at=old, ready=False, problem="waiting to start: database is locked")
    heartbeat.write(path, beat)
    found, _ = problems(path)
    assert any("heartbeat is" in line and "old" in line for line in found), found
    assert any("waiting to start" in line for line in found), found  # the last thing it said
