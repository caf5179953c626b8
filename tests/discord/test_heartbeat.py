"""The running bot writes the heartbeat that `python -m bot health` (the Docker HEALTHCHECK)
reads."""

from __future__ import annotations

import asyncio
import json

from bot.heartbeat import heartbeat_path, problems
from tests.discord.harness import world


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
