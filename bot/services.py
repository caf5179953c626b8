"""Building the services once, from the settings: database, stores, orchestrator client,
metrics.

`python -m bot run` builds them in main() and hands them to the Bot; the CLI, the crash-test
runner and the benchmarks use the same builder, so every entry point wires things alike.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from bot.civitai.client import OrchestratorClient
from bot.civitai.simulator import Simulator
from bot.config import Settings
from bot.engine.engine import Engine, EngineSettings
from bot.engine.follow import LongPoll
from bot.engine.parts import PromptFilter
from bot.engine.publisher import OperatorAlerts, Publisher, ReviewListener
from bot.media.pool import ImagePool
from bot.metrics import Metrics
from bot.store.db import Database, utcnow
from bot.store.guilds import GuildStore
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from bot.store.moderation import ModerationStore
from bot.store.retention import Retention

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    ledger: Ledger
    jobs: JobStore
    guilds: GuildStore
    moderation: ModerationStore
    client: OrchestratorClient
    simulator: Simulator | None
    clock: Callable[[], datetime]
    # For Discord attachments (edit sources): its own pool, timeouts, no redirects.
    downloads: httpx.AsyncClient
    # What is pruned, when (stored source images of jobs ended long ago).
    retention: Retention
    # Decoding, re-encoding and fitting images: bounded, shared by intake and delivery.
    images: ImagePool = field(default_factory=ImagePool)
    # One registry per bot, shared by the engine, the client and the metrics server.
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def simulated(self) -> bool:
        return self.simulator is not None

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            policy=LongPoll(self.settings.civitai.wait_seconds),
            whatif=self.settings.civitai.whatif,
            deadline=timedelta(minutes=self.settings.jobs.deadline_minutes),
            delivery_deadline=timedelta(minutes=self.settings.jobs.delivery_deadline_minutes),
            simulated=self.simulated,
        )

    def engine(
        self,
        publisher: Publisher,
        *,
        reviews: ReviewListener | None = None,
        alerts: OperatorAlerts | None = None,
        prompt_filter: PromptFilter | None = None,
        settings: EngineSettings | None = None,
    ) -> Engine:
        """The one place an Engine is built: the app, the benchmarks, the crash test and the
        test harnesses all wire it from these services and their listeners."""
        return Engine(
            db=self.db,
            jobs=self.jobs,
            ledger=self.ledger,
            guilds=self.guilds,
            moderation=self.moderation,
            client=self.client,
            publisher=publisher,
            settings=settings or self.engine_settings(),
            reviews=reviews,
            alerts=alerts,
            prompt_filter=prompt_filter,
            clock=self.clock,
            metrics=self.metrics,
        )

    async def aclose(self) -> None:
        self.images.close()
        await self.downloads.aclose()
        await self.client.aclose()
        if self.simulator is not None:
            await self.simulator.stop()
        await self.db.close()


def make_client(
    settings: Settings, base_url: str, token: object, metrics: Metrics | None = None
) -> OrchestratorClient:
    civitai = settings.civitai
    return OrchestratorClient(
        base_url,
        token,  # type: ignore[arg-type]
        currencies=list(civitai.currencies),
        timeout=civitai.request_timeout_seconds,
        max_retries=civitai.max_retries,
        retry_max_delay=civitai.retry_max_delay_seconds,
        blob_hosts=list(civitai.blob_hosts),
        max_blob_bytes=civitai.max_blob_bytes,
        metrics=metrics,
    )


async def build_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    base_url: str | None = None,
    token: str | None = None,
) -> Services:
    """Open the database and connect to the orchestrator — or start the built-in simulator
    when there is no CIVITAI_TOKEN (or when `base_url`/`token` point at one already)."""
    simulator: Simulator | None = None
    if base_url is None:
        if settings.simulated:
            simulator = Simulator(token=secrets.token_urlsafe(24), speed=settings.simulator.speed)
            base_url = await simulator.start(port=settings.simulator.port)
            token = simulator.token
            log.warning(
                "NO CIVITAI_TOKEN: running on the built-in simulator at %s — placeholder "
                "images, no Buzz spent upstream",
                base_url,
            )
        else:
            base_url = settings.civitai.base_url
            assert settings.civitai.token is not None
            token = settings.civitai.token.get_secret_value()
    db = await Database(settings.database.path).open()
    defaults = settings.defaults
    metrics = Metrics()
    return Services(
        settings=settings,
        db=db,
        ledger=Ledger(
            db,
            default_allowance=defaults.allowance,
            default_period=defaults.allowance_period,
            clock=clock,
        ),
        jobs=JobStore(db, clock),
        guilds=GuildStore(db, defaults, clock),
        moderation=ModerationStore(db, clock),
        client=make_client(settings, base_url, token, metrics),
        simulator=simulator,
        clock=clock,
        retention=Retention(db, settings.retention.days, clock),
        downloads=httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=False),
        metrics=metrics,
    )
