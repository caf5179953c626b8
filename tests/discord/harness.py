"""End-to-end harness: the real bot (ImageBot, real cogs) against the loopback fake Discord,
the orchestrator simulator over HTTP, and a SQLite file on disk."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bot.app import ImageBot
from bot.config import Settings
from bot.orchestrator.simulator import Simulator
from bot.services import Services, build_services
from bot.store.jobs import JobRecord
from tests.fakes import FakeDiscord, running_bot

MANAGE_MESSAGES = 1 << 13
MANAGE_GUILD = 1 << 5


def png(
    width: int = 64, height: int = 64, colour: tuple[int, ...] = (40, 90, 200), mode: str = "RGB"
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


@dataclass
class World:
    fake: FakeDiscord
    sim: Simulator
    services: Services
    bot: ImageBot
    guild: int
    channel: int
    member: int
    other: int
    moderator: int
    admin: int

    async def grant(self, amount: int, member: int | None = None) -> None:
        await self.services.db.write(
            self.services.ledger.grant,
            self.guild,
            member or self.member,
            amount,
            actor_id=None,
            reason="test",
        )

    async def available(self, member: int | None = None) -> int:
        return await self.services.ledger.available_now(self.guild, member or self.member)

    async def jobs(self) -> list[JobRecord]:
        return await self.services.jobs.all(limit=1000)

    async def only_job(self, timeout: float = 10) -> JobRecord:
        """The one job; admission follows the status message, so wait for it."""
        async with asyncio.timeout(timeout):
            while not (jobs := await self.jobs()):
                await asyncio.sleep(0.02)
        [job] = jobs
        return job

    async def wait_job(self, job_id: str, *statuses: str, timeout: float = 20) -> JobRecord:
        async with asyncio.timeout(timeout):
            while True:
                job = await self.services.jobs.get(job_id)
                if job is not None and job.status.value in statuses:
                    return job
                await asyncio.sleep(0.02)

    async def wait_idle(self, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            await self.bot.engine.wait_idle()

    def channel_messages(self) -> list[dict[str, Any]]:
        return self.fake.channel_messages(self.channel)

    def results(self) -> list[dict[str, Any]]:
        """Messages carrying result images (embed title 'model · N image(s)')."""
        return [
            m
            for m in self.channel_messages()
            if m.get("attachments")
            and any("image" in (e.get("title") or "") for e in m.get("embeds", []))
        ]

    async def restart_bot(self) -> None:
        """A new bot process on the same database, simulator and Discord."""
        raise NotImplementedError  # provided by world() below


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "discord": {"token": "test-token"},
        "database": {"path": tmp_path / "bot.sqlite3"},
        "media": {"attachment_hosts": ["127.0.0.1"]},
        "jobs": {"status_edit_interval_seconds": 1.0},
        "defaults": {"per_member_concurrency": 5, "confirm_above": 5000},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return Settings(**data)


def new_bot(services: Services) -> ImageBot:
    return ImageBot(services, chunk_guilds_at_startup=False, guild_ready_timeout=0.1)


@asynccontextmanager
async def world(tmp_path: Path, *, speed: float = 0.01, **overrides: Any) -> AsyncIterator[World]:
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Images")
        channel = fake.add_channel(guild, "art")
        member = fake.add_member(guild, "alice")
        other = fake.add_member(guild, "bob")
        moderator = fake.add_member(guild, "mod", permissions=MANAGE_MESSAGES)
        admin = fake.add_member(guild, "admin", permissions=MANAGE_GUILD)
        sim = Simulator(speed=speed, seed=5)
        await sim.start()
        settings = settings_for(tmp_path, discord={"dev_guild": guild}, **overrides)
        services = await build_services(settings, base_url=sim.base_url, token=sim.token)
        try:
            bot = new_bot(services)
            async with running_bot(fake, bot):
                yield World(
                    fake, sim, services, bot, guild, channel, member, other, moderator, admin
                )
        finally:
            await services.aclose()
            await sim.stop()
        assert fake.crashes == [], fake.crashes
