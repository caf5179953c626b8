"""End-to-end harness: the real bot (ImageBot, real cogs) against the loopback fake Discord,
the orchestrator simulator over HTTP, and a SQLite file on disk."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from bot.civitai.placeholder import CONTENT_TYPES
from bot.civitai.simulator import Simulator
from bot.config import Settings
from bot.discord_adapter.bot import ImageBot, make_bot
from bot.services import Services, build_services
from bot.store.db import utcnow
from bot.store.jobs import JobRecord
from tests.fakes import FakeDiscord, InteractionHandle, patched_endpoints, start_bot, stop_bot

MANAGE_MESSAGES = 1 << 13
MANAGE_GUILD = 1 << 5
EPHEMERAL = 1 << 6


def png(
    width: int = 64, height: int = 64, colour: tuple[int, ...] = (40, 90, 200), mode: str = "RGB"
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 64, height: int = 64, colour: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress (random pixels): its byte size is about w*h*3."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def image_format(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodable, not only a header
        return str(img.format)


def open_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.copy()


def data_url_bytes(url: str) -> tuple[str, bytes]:
    """('image/png', b'...') from 'data:image/png;base64,...'."""
    head, _, body = url.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head[:40]
    return head[5:-7], base64.b64decode(body)


def sent_bytes(sim: Simulator, url: str) -> tuple[str, bytes]:
    """(MIME type, bytes) of a source as a step names it: a data URL, or (uploaded once) the
    URL of one of the simulator's blobs."""
    if url.startswith("data:"):
        return data_url_bytes(url)
    blob_id = sim.blobs.blob_id_of(url)
    assert blob_id is not None, f"not a working URL of the simulator's blobs: {url[:60]}"
    record = sim.blobs.get(blob_id)
    assert record is not None and record.data is not None, f"{blob_id} is not an upload"
    return CONTENT_TYPES[record.fmt], record.data


def text_of(message: dict[str, Any]) -> str:
    """Everything a member reads in a message: content and every embed's text."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        for f in embed.get("fields") or []:
            parts += [f.get("name") or "", f.get("value") or ""]
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(parts)


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """label -> custom_id of every button on a message."""
    found: dict[str, str] = {}
    for row in message.get("components") or []:
        for c in row.get("components") or []:
            if c.get("type") == 2 and c.get("custom_id"):
                found[c.get("label") or ""] = c["custom_id"]
    return found


def field_value(message: dict[str, Any], name: str) -> str:
    for embed in message.get("embeds") or []:
        for f in embed.get("fields") or []:
            if f.get("name") == name:
                return str(f.get("value"))
    raise AssertionError(f"no field {name!r} in {text_of(message)!r}")


def is_ephemeral(message: dict[str, Any]) -> bool:
    return bool(int(message.get("flags") or 0) & EPHEMERAL)


async def answer(handle: InteractionHandle, timeout: float = 10.0) -> dict[str, Any]:
    """The member's visible answer to an interaction: the initial message, or (after a defer or
    an update) the first follow-up. Returns the message dict."""
    response = await handle.response(timeout)
    if response["type"] == 4:
        return await handle.original(timeout)
    return await handle.wait_for_followup(1, timeout)


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
    settings: Settings
    simulated: bool = False
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def grant(self, amount: int, member: int | None = None) -> None:
        await self.services.db.write(
            self.services.ledger.grant_in,
            self.guild,
            member or self.member,
            amount,
            actor_id=None,
            reason="test",
        )

    async def take(self, amount: int, member: int | None = None) -> None:
        await self.services.db.write(
            self.services.ledger.take_in,
            self.guild,
            member or self.member,
            amount,
            actor_id=None,
            reason="test",
        )

    async def set_guild(self, **changes: Any) -> None:
        """What an admin's /settings does: write the guild's settings."""
        await self.services.db.write(self.services.guilds.update_in, self.guild, **changes)

    async def available(self, member: int | None = None) -> int:
        return await self.services.ledger.available_now(self.guild, member or self.member)

    async def jobs(self) -> list[JobRecord]:
        return await self.services.jobs.all(limit=1000)

    async def holds(self) -> int:
        row = await self.services.db.fetchone("SELECT COUNT(*) FROM holds")
        return int(row[0]) if row else 0

    async def only_job(self, timeout: float = 10) -> JobRecord:
        """The one job; admission follows the status message, so wait for it."""
        async with asyncio.timeout(timeout):
            while not (jobs := await self.jobs()):
                await asyncio.sleep(0.02)
        [job] = jobs
        return job

    async def new_job(self, known: set[str], timeout: float = 10) -> JobRecord:
        """The one job whose id is not in `known`."""
        async with asyncio.timeout(timeout):
            while True:
                fresh = [j for j in await self.jobs() if j.id not in known]
                if fresh:
                    [job] = fresh
                    return job
                await asyncio.sleep(0.02)

    async def wait_job(self, job_id: str, *statuses: str, timeout: float = 20) -> JobRecord:
        async with asyncio.timeout(timeout):
            while True:
                job = await self.services.jobs.job(job_id)
                if job is not None and job.status.value in statuses:
                    return job
                await asyncio.sleep(0.02)

    async def wait_idle(self, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            await self.bot.engine.wait_idle()

    def channel_messages(self) -> list[dict[str, Any]]:
        return self.fake.channel_messages(self.channel)

    def results(self) -> list[dict[str, Any]]:
        """Messages carrying result images (embed footer 'result of job …')."""
        return [
            m
            for m in self.channel_messages()
            if m.get("attachments")
            and any(
                ((e.get("footer") or {}).get("text") or "").startswith("result of job")
                for e in m.get("embeds", [])
            )
        ]

    def results_of(self, job_id: str) -> list[dict[str, Any]]:
        return [m for m in self.results() if f"result of job {job_id}" in text_of(m)]

    async def wait_result(self, job_id: str, timeout: float = 20) -> dict[str, Any]:
        found = await self.fake.wait_for(
            lambda: self.results_of(job_id), timeout=timeout, what=f"the result of {job_id}"
        )
        return found[0]

    def status_message(self, job: JobRecord) -> dict[str, Any]:
        assert job.status_message_id is not None
        return self.fake.message(job.status_message_id)

    async def wait_status(self, job: JobRecord, words: str, timeout: float = 20) -> dict[str, Any]:
        """The job's status message once its Status field contains `words`."""

        def check() -> dict[str, Any] | None:
            message = self.status_message(job)
            return message if words in field_value(message, "Status") else None

        return await self.fake.wait_for(check, timeout=timeout, what=f"status {words!r}")

    async def wait_message(
        self, message_id: int | str, words: str, timeout: float = 20
    ) -> dict[str, Any]:
        """The message once its content contains `words` (a question edited in place)."""

        def check() -> dict[str, Any] | None:
            message = self.fake.message(int(message_id))
            return message if message and words in message["content"] else None

        return await self.fake.wait_for(check, timeout=timeout, what=f"message {words!r}")

    def calls_with_code(self, code: int) -> list[Any]:
        return [c for c in self.fake.calls if c.error_code == code]

    # -- bot process ------------------------------------------------------------------------
    async def _start(self, services: Services) -> None:
        self.services = services
        self.bot = new_bot(services)
        self._task = await start_bot(self.fake, self.bot)
        self.fake.watch(self._task)

    async def _stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        self.fake.unwatch(task)
        await stop_bot(self.bot, task)

    async def restart_bot(self) -> None:
        """A new bot process: the old one stops (its job tasks die mid-flight), a new one with
        NEW services on the same database, simulator and Discord starts and resumes."""
        await self._stop()
        await self.services.aclose()
        services = await build_services(
            self.settings,
            base_url=self.sim.base_url,
            token=self.sim.token,
            clock=self.services.clock,
        )
        await self._start(services)

    restart = restart_bot


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "discord": {"token": "test-token"},
        "database": {"path": tmp_path / "bot.sqlite3"},
        "media": {"attachment_hosts": ["127.0.0.1"]},
        "jobs": {"status_edit_interval_seconds": 1.0},
        "defaults": {"per_member_concurrency": 5, "confirm_above": 5000},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:  # a top-level setting (provider)
            data[section] = values
    return Settings(**data)


def new_bot(services: Services) -> ImageBot:
    return make_bot(services, chunk_guilds_at_startup=False, guild_ready_timeout=0.1)


@asynccontextmanager
async def world(
    tmp_path: Path,
    *,
    speed: float = 0.01,
    simulated: bool = False,
    clock: Callable[[], datetime] = utcnow,
    **overrides: Any,
) -> AsyncIterator[World]:
    """`simulated=True`: no base_url/token, so build_services starts its own simulator (the
    caller must make sure CIVITAI_TOKEN is unset); its speed is `speed`. `clock` is the
    services' clock (bans, periods), for tests that move time."""
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Images")
        channel = fake.add_channel(guild, "art")
        member = fake.add_member(guild, "alice")
        other = fake.add_member(guild, "bob")
        moderator = fake.add_member(guild, "mod", permissions=MANAGE_MESSAGES)
        admin = fake.add_member(guild, "admin", permissions=MANAGE_GUILD)
        own_sim: Simulator | None = None
        if simulated:
            overrides.setdefault("simulator", {}).setdefault("speed", speed)
        overrides.setdefault("discord", {}).setdefault("dev_guild", guild)
        settings = settings_for(tmp_path, **overrides)
        if simulated:
            services = await build_services(settings, clock=clock)
            assert services.simulator is not None
            sim = services.simulator
        else:
            own_sim = sim = Simulator(speed=speed, seed=5)
            await sim.start()
            services = await build_services(
                settings, base_url=sim.base_url, token=sim.token, clock=clock
            )
        w = World(
            fake,
            sim,
            services,
            None,  # type: ignore[arg-type]
            guild,
            channel,
            member,
            other,
            moderator,
            admin,
            settings,
            simulated=simulated,
        )
        try:
            with patched_endpoints(fake):
                await w._start(services)
                try:
                    yield w
                finally:
                    await w._stop()
        finally:
            await w.services.aclose()
            if own_sim is not None:
                await own_sim.stop()
        assert fake.crashes == [], fake.crashes
        assert fake.unknown_calls == [], fake.unknown_calls


async def job_of(w: World, status_message_id: int, timeout: float = 10) -> JobRecord:
    """The job whose status message is `status_message_id` (admitted just after it is posted)."""
    async with asyncio.timeout(timeout):
        while True:
            for job in await w.jobs():
                if job.status_message_id == status_message_id:
                    return job
            await asyncio.sleep(0.02)


async def status_post(handle: InteractionHandle, timeout: float = 30) -> dict[str, Any]:
    """The public status message of the job a command started. The command's own answer is
    private (a "thinking…" that becomes "Started"); the status follows once the job is
    admitted, so a request refused at any point leaves nothing in the channel."""
    first = await handle.response()
    if first["type"] == 5:  # a command: a private "thinking…"
        assert handle.ephemeral, (first, handle.followups)
    message = await handle.wait_for_followup(1, timeout=timeout)
    assert not message["flags"] & 64, message
    return message


async def started(w: World, handle: InteractionHandle) -> JobRecord:
    """The job a command started, found by its public status message."""
    message = await status_post(handle)
    return await job_of(w, int(message["id"]))


async def finish(
    w: World, handle: InteractionHandle, timeout: float = 30
) -> tuple[JobRecord, dict[str, Any]]:
    """Wait for the job a command started to end; it must be done with ONE result message."""
    job = await started(w, handle)
    return await finished(w, job, timeout)


async def finished(
    w: World, job: JobRecord, timeout: float = 30
) -> tuple[JobRecord, dict[str, Any]]:
    final = ("done", "failed", "blocked", "canceled", "expired", "rejected")
    job = await w.wait_job(job.id, *final, timeout=timeout)
    assert job.status.value == "done", (job.status, job.error)
    [result] = w.results_of(job.id)
    return job, result
