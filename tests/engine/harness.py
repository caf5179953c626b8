"""Engine test harness: a real simulator over HTTP, a real SQLite file, a recording publisher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.catalog import Model, Operation, RequestOptions
from bot.civitai.client import OrchestratorClient
from bot.civitai.simulator import Simulator
from bot.config import GuildDefaults, Settings
from bot.engine.engine import Engine, EngineSettings
from bot.engine.follow import LongPoll
from bot.engine.publisher import ResultImage, StatusUpdate
from bot.engine.requests import JobRequest, Requester
from bot.filters import PromptFilters
from bot.services import Services, build_services
from bot.store.db import Database, utcnow
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStore
from bot.store.ledger import Ledger
from bot.store.moderation import ModerationStore, ReviewItem

GUILD, CHANNEL, MEMBER = 1001, 2002, 3003


@dataclass
class MemoryPublisher:
    """Records what a member would see; delivery ids are remembered across engine restarts."""

    updates: list[StatusUpdate] = field(default_factory=list)
    deliveries: dict[str, list[int]] = field(default_factory=dict)
    posts: list[tuple[str, list[ResultImage]]] = field(default_factory=list)
    fail_deliveries: int = 0
    previews: list[tuple[str, bytes]] = field(default_factory=list)
    # Raised, in turn, by the next deliveries (Discord answering 5xx, 403...).
    post_faults: list[Exception] = field(default_factory=list)
    # Raised by the next deliveries after they were made (an answer lost on the way back).
    faults_after_post: list[Exception] = field(default_factory=list)

    async def on_status(self, update: StatusUpdate) -> None:
        self.updates.append(update)

    async def on_preview(self, job: JobRecord, image: bytes, mime: str) -> None:
        self.previews.append((job.id, image))

    async def find_delivery(self, job: JobRecord) -> list[int] | None:
        return self.deliveries.get(job.id)

    async def find_status(self, job: JobRecord) -> int | None:
        return None

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        if self.post_faults:
            raise self.post_faults.pop(0)
        if self.fail_deliveries:
            self.fail_deliveries -= 1
            raise ConnectionError("discord is down")
        self.posts.append((job.id, images))
        ids = [len(self.posts)]
        self.deliveries[job.id] = ids
        if self.faults_after_post:
            raise self.faults_after_post.pop(0)
        return ids

    def statuses(self, job_id: str) -> list[str]:
        return [u.job.status.value for u in self.updates if u.job.id == job_id]

    def messages(self, job_id: str) -> list[str]:
        return [u.message for u in self.updates if u.job.id == job_id and u.message]


@dataclass
class Reviews:
    items: list[tuple[ReviewItem, JobRecord]] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)

    async def on_review_item(self, item: ReviewItem, job: JobRecord) -> None:
        self.items.append((item, job))

    async def on_review_changed(self, item_id: int) -> None:
        self.changed.append(item_id)


@dataclass
class Alerts:
    alerts: list[tuple[str, str]] = field(default_factory=list)

    async def on_operator_alert(self, key: str, message: str) -> None:
        self.alerts.append((key, message))


@dataclass
class Harness:
    sim: Simulator
    db: Database
    engine: Engine
    ledger: Ledger
    jobs: JobStore
    guilds: GuildStore
    moderation: ModerationStore
    client: OrchestratorClient
    publisher: MemoryPublisher
    reviews: Reviews
    alerts: Alerts
    services: Services
    # The guilds' prompt filters, when the harness was asked for them.
    filters: PromptFilters | None = None

    def request(
        self,
        prompt: str = "a lighthouse at dusk",
        *,
        model: Model = Model.GPT_IMAGE_2,
        operation: Operation = Operation.CREATE,
        member: int = MEMBER,
        roles: tuple[int, ...] = (),
        confirmed: bool = True,
        **options: Any,
    ) -> JobRequest:
        if model is Model.GPT_IMAGE_2:
            options.setdefault("size", "1024x1024")
        return JobRequest(
            Requester(GUILD, CHANNEL, member, roles),
            model,
            operation,
            RequestOptions(prompt=prompt, **options),
            confirmed=confirmed,
        )

    async def grant(self, amount: int, member: int = MEMBER) -> None:
        await self.db.write(
            self.ledger.grant_in, GUILD, member, amount, actor_id=None, reason="test"
        )

    async def restart_engine(self) -> Engine:
        """A new engine (as after a process restart) on the same database and simulator."""
        old = self.engine
        await old.stop()
        self.engine = self.services.engine(
            self.publisher,
            reviews=self.reviews,
            alerts=self.alerts,
            prompt_filter=old.prompt_filter,
            settings=old.settings,
        )
        await self.engine.start()
        return self.engine

    async def settle_all(self, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            await self.engine.wait_idle()

    async def job(self, job_id: str) -> JobRecord:
        job = await self.jobs.job(job_id)
        assert job is not None
        return job

    async def available(self, member: int = MEMBER) -> int:
        return (await self.ledger.balance(GUILD, member)).available


@asynccontextmanager
async def harness(
    tmp_path: Path,
    *,
    speed: float = 0.005,
    settings: EngineSettings | None = None,
    defaults: GuildDefaults | None = None,
    publisher: MemoryPublisher | None = None,
    clock: Callable[[], datetime] = utcnow,
    client_retries: int = 3,
    sim: Simulator | None = None,
    prompt_filter: Any = None,
    prompt_filters: bool = False,
) -> AsyncIterator[Harness]:
    """`prompt_filters`: the engine consults the guilds' real prompt filters (h.filters)."""
    own_sim = sim is None
    sim = sim or Simulator(speed=speed, seed=7)
    if own_sim:
        await sim.start()
    defaults = defaults or GuildDefaults(
        confirm_above=100_000, per_member_concurrency=50, per_guild_concurrency=500
    )
    config = Settings(
        database={"path": tmp_path / "bot.sqlite3"},
        civitai={"max_retries": client_retries, "retry_max_delay_seconds": 0.05},
        defaults=defaults,
    )
    services = await build_services(config, clock=clock, base_url=sim.base_url, token=sim.token)
    publisher = publisher or MemoryPublisher()
    reviews, alerts = Reviews(), Alerts()
    filters = PromptFilters(services.db, clock) if prompt_filters else None
    if filters is not None:
        prompt_filter = filters.match
    engine = services.engine(
        publisher,
        reviews=reviews,
        alerts=alerts,
        prompt_filter=prompt_filter,
        settings=settings or EngineSettings(policy=LongPoll(60), retry_base=0.01, retry_cap=0.05),
    )
    h = Harness(
        sim,
        services.db,
        engine,
        services.ledger,
        services.jobs,
        services.guilds,
        services.moderation,
        services.client,
        publisher,
        reviews,
        alerts,
        services,
        filters,
    )
    try:
        yield h
    finally:
        await h.engine.stop()  # the one running now (restart_engine replaces it)
        await services.aclose()
        if own_sim:
            await sim.stop()
