"""Building the services once, from the settings: database, stores, the upstream lane
(the Civitai orchestrator, or with BOT_PROVIDER=openai the OpenAI Images API), metrics.

`python -m bot run` builds them in main() and hands them to the Bot; the CLI, the crash-test
runner and the benchmarks use the same builder, so every entry point wires things alike.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from bot import net
from bot.civitai.client import OrchestratorClient
from bot.civitai.lane import CivitaiLane
from bot.civitai.safety import CivitaiSafety
from bot.civitai.sources import SourceUploads
from bot.config import Settings
from bot.engine.engine import Engine, EngineSettings
from bot.engine.follow import follow_policy
from bot.engine.lane import Lane, SwitchedLanes
from bot.engine.parts import PromptFilter, backoff
from bot.engine.publisher import OperatorAlerts, Publisher, ReviewListener
from bot.engine.safety import MemberNotices, Safety
from bot.media.pool import ImagePool
from bot.metrics import Metrics
from bot.openai_api.lane import OpenAILane
from bot.openai_api.service import OpenAIService, open_service
from bot.openai_api.switched_away import SwitchedAway, made_for_openai
from bot.store.db import Database, utcnow
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStatus, JobStore
from bot.store.ledger import Ledger
from bot.store.moderation import ModerationStore
from bot.store.retention import Retention
from bot.store.safety import SafetyStore
from bot.store.source_blobs import SourceBlobStore
from bot.store.state import BotState

if TYPE_CHECKING:  # the simulators (aiohttp server, schema validation) load only when used
    from bot.civitai.simulator import Simulator

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
    # The bot's memory of itself between runs (which commands it registered where).
    state: BotState
    # Content levels per channel, the release channel, AI pre-moderation (bot/store/safety.py).
    safety: SafetyStore
    # Decoding, re-encoding and fitting images: bounded, shared by intake and delivery.
    images: ImagePool = field(default_factory=ImagePool)
    # One registry per bot, shared by the engine, the client and the metrics server.
    metrics: Metrics = field(default_factory=Metrics)
    # The OpenAI lane's parts, when it is the active lane (BOT_PROVIDER=openai).
    openai: OpenAIService | None = None

    @property
    def provider(self) -> str:
        return "openai" if self.openai is not None else "civitai"

    @property
    def simulated(self) -> bool:
        """The active lane runs on its built-in simulator."""
        if self.openai is not None:
            return self.openai.simulator is not None
        return self.simulator is not None

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            policy=follow_policy(self.settings.civitai.wait_seconds),
            whatif=self.settings.civitai.whatif,
            deadline=timedelta(minutes=self.settings.jobs.deadline_minutes),
            delivery_deadline=timedelta(minutes=self.settings.jobs.delivery_deadline_minutes),
            simulated=self.simulated,
            drain=self.settings.jobs.shutdown_drain_seconds,
            max_pixels=self.settings.media.max_pixels,
            max_result_bytes=self.settings.civitai.max_blob_bytes,
        )

    def engine(
        self,
        publisher: Publisher,
        *,
        reviews: ReviewListener | None = None,
        alerts: OperatorAlerts | None = None,
        prompt_filter: PromptFilter | None = None,
        settings: EngineSettings | None = None,
        notices: MemberNotices | None = None,
    ) -> Engine:
        """The one place an Engine is built: the app, the benchmarks, the crash test and the
        test harnesses all wire it from these services and their listeners."""
        settings = settings or self.engine_settings()
        return Engine(
            db=self.db,
            jobs=self.jobs,
            ledger=self.ledger,
            guilds=self.guilds,
            moderation=self.moderation,
            lane=self.lane(settings),
            publisher=publisher,
            settings=settings,
            reviews=reviews,
            alerts=alerts,
            prompt_filter=prompt_filter,
            safety=Safety(self.safety, self.safety_upstream(), notices),
            clock=self.clock,
            metrics=self.metrics,
        )

    def orchestrator_usable(self) -> bool:
        """Whether the orchestrator can be called: not by the OpenAI lane without a
        CIVITAI_TOKEN."""
        token = self.settings.civitai.token
        return self.openai is None or (token is not None and bool(token.get_secret_value()))

    def safety_upstream(self) -> CivitaiSafety | None:
        """Who rates and pre-moderates: the orchestrator (xGuardModeration, blob uploads) —
        None when it cannot be used (the OpenAI lane without a CIVITAI_TOKEN)."""
        if not self.orchestrator_usable():
            return None
        return CivitaiSafety(self.client, blobs=SourceBlobStore(self.db, self.clock))

    def lane(self, settings: EngineSettings) -> Lane:
        """The upstream service jobs run on: the Civitai orchestrator, or the OpenAI lane. Jobs
        of the other one, left by a switch (BOT_PROVIDER) at a restart, end where they ran."""
        if self.openai is None:
            # The OpenAI lane's jobs left by a switch: their stored images are still posted.
            return SwitchedLanes(
                self._civitai_lane(settings), SwitchedAway(self.db), made_for_openai
            )
        openai = OpenAILane(
            self.openai,
            self.db,
            self.jobs,
            clock=self.clock,
            max_pixels=self.settings.media.max_pixels,
            images=self.images,
        )
        if not self.orchestrator_usable():
            return openai  # such jobs cannot be followed: the lane ends them, nothing charged
        return SwitchedLanes(openai, self._civitai_lane(settings), sent_to_orchestrator)

    def _civitai_lane(self, settings: EngineSettings) -> CivitaiLane:
        return CivitaiLane(
            self.client,
            self.jobs,
            policy=settings.policy,
            retry_cap=settings.retry_cap,
            backoff=functools.partial(backoff, settings, self.clock),
            clock=self.clock,
            metrics=self.metrics,
            sources=SourceUploads(
                self.client,
                self.jobs,
                SourceBlobStore(self.db, self.clock),
                deadline=settings.deadline,
                clock=self.clock,
            ),
            images=self.images,
            max_pixels=self.settings.media.max_pixels,
        )

    async def aclose(self) -> None:
        self.images.close()
        await self.downloads.aclose()
        await self.client.aclose()
        if self.simulator is not None:
            await self.simulator.stop()
        if self.openai is not None:
            await self.openai.aclose()
        await self.db.close()


def sent_to_orchestrator(job: JobRecord) -> bool:
    """A job of the Civitai lane that may exist on the orchestrator (an attempt to submit it
    was made): it runs and charges there whatever lane the bot has switched to since. One
    never sent is not sent now: the operator switched away from the orchestrator."""
    if made_for_openai(job):
        return False
    return job.submit_attempted_at is not None or job.status is not JobStatus.QUEUED


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
    when there is no CIVITAI_TOKEN (or when `base_url`/`token` point at one already). With
    BOT_PROVIDER=openai the jobs run on the OpenAI lane instead (its own simulator when there
    is no OPENAI_API_KEY); the orchestrator's client is made but not used for jobs."""
    simulator: Simulator | None = None
    openai_lane = settings.provider == "openai"
    if base_url is None and openai_lane:
        base_url = settings.civitai.base_url
        token = settings.civitai.token.get_secret_value() if settings.civitai.token else None
    elif base_url is None:
        if settings.simulated:
            from bot.civitai.simulator import Simulator

            simulator = Simulator(token=secrets.token_urlsafe(24), speed=settings.simulator.speed)
            base_url = await net.start_simulator(simulator, settings.simulator.port)
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
    if not openai_lane:
        log.info("lane: civitai at %s", net.without_credentials(base_url))
    metrics = Metrics()
    db = await Database(settings.database.path, on_refused=metrics.database_refused).open()
    defaults = settings.defaults
    state = BotState(db, clock)
    openai = None
    if openai_lane:
        try:
            openai = await open_service(settings, state, metrics=metrics)
        except BaseException:
            await db.close()
            raise
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
        state=state,
        safety=SafetyStore(db, clock),
        downloads=httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=False),
        metrics=metrics,
        openai=openai,
    )
