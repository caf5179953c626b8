"""The engine on the OpenAI lane: the real services (BOT_PROVIDER=openai) against the OpenAI
simulator over loopback HTTP, a SQLite file, and the engine tests' recording publisher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.catalog import Model, Operation, RequestOptions
from bot.config import GuildDefaults, Settings
from bot.engine.engine import Engine, EngineSettings
from bot.engine.requests import JobRequest, Requester
from bot.openai_api.simulator import OpenAISimulator
from bot.services import Services, build_services
from bot.store import audit
from bot.store.jobs import JobRecord
from tests.engine.harness import CHANNEL, GUILD, MEMBER, Alerts, MemoryPublisher, Reviews
from tests.openai_api.conftest import FAST, SIM_KEY


@dataclass
class LaneHarness:
    sim: OpenAISimulator
    services: Services
    engine: Engine
    publisher: MemoryPublisher
    reviews: Reviews
    alerts: Alerts

    def request(
        self,
        prompt: str = "a lighthouse at dusk",
        *,
        model: Model = Model.GPT_IMAGE_2,
        operation: Operation = Operation.CREATE,
        member: int = MEMBER,
        age_restricted: bool = False,
        **options: Any,
    ) -> JobRequest:
        if model is Model.GPT_IMAGE_2 and operation is Operation.CREATE:
            options.setdefault("size", "1536x1024")
            options.setdefault("quality", "medium")
        return JobRequest(
            Requester(GUILD, CHANNEL, member, age_restricted=age_restricted),
            model,
            operation,
            RequestOptions(prompt=prompt, **options),
            confirmed=True,
        )

    async def grant(self, amount: int, member: int = MEMBER) -> None:
        ledger = self.services.ledger
        await self.services.db.write(
            ledger.grant_in, GUILD, member, amount, actor_id=None, reason="test"
        )

    async def available(self, member: int = MEMBER) -> int:
        return (await self.services.ledger.balance(GUILD, member)).available

    async def job(self, job_id: str) -> JobRecord:
        job = await self.services.jobs.job(job_id)
        assert job is not None
        return job

    async def settle_all(self, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            await self.engine.wait_idle()

    async def run(self, request: JobRequest, timeout: float = 20) -> JobRecord:
        job = await self.engine.submit(request)
        await self.settle_all(timeout)
        return await self.job(job.id)

    async def audit(self, action: str) -> list[audit.AuditEvent]:
        return await audit.events(self.services.db, action=action, oldest_first=True)

    async def restart_engine(self) -> Engine:
        """A new engine, as after a process restart, on the same services and simulator."""
        old = self.engine
        await old.stop()
        self.engine = self.services.engine(
            self.publisher, reviews=self.reviews, alerts=self.alerts, settings=old.settings
        )
        await self.engine.start()
        return self.engine


def lane_settings(tmp_path: Path, sim: OpenAISimulator, **openai: Any) -> Settings:
    return Settings(
        provider="openai",
        database={"path": tmp_path / "bot.sqlite3"},
        openai={
            "base_url": sim.base_url,
            "api_key": sim.api_key,
            "max_retries": 2,
            "retry_max_delay_seconds": 0.05,
            **openai,
        },
        defaults=GuildDefaults(
            confirm_above=100_000, per_member_concurrency=50, per_guild_concurrency=500
        ),
    )


@asynccontextmanager
async def lane_harness(
    tmp_path: Path,
    *,
    speed: float = FAST,
    engine_settings: EngineSettings | None = None,
    sim: OpenAISimulator | None = None,
    **openai: Any,
) -> AsyncIterator[LaneHarness]:
    own = sim is None
    sim = sim or OpenAISimulator(api_key=SIM_KEY, speed=speed, seed=3, max_image_side=256)
    if own:
        await sim.start()
    services = await build_services(lane_settings(tmp_path, sim, **openai))
    publisher, reviews, alerts = MemoryPublisher(), Reviews(), Alerts()
    engine = services.engine(
        publisher,
        reviews=reviews,
        alerts=alerts,
        # drain=0: a stop (restart_engine) cuts calls short, as a crash would, unless a test
        # asks for the orderly stop's wait.
        settings=engine_settings or EngineSettings(retry_base=0.01, retry_cap=0.05, drain=0.0),
    )
    try:
        yield LaneHarness(sim, services, engine, publisher, reviews, alerts)
    finally:
        await engine.stop()
        await services.aclose()
        if own:
            await sim.stop()
