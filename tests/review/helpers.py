"""Real pieces for the moderation tests: the engine harness plus a ReviewService and the guild's
PromptFilters on the same database, and a clock the test can move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.catalog import Model, Operation, RequestOptions
from bot.engine.requests import JobRequest, Requester
from bot.filters import PromptFilters
from bot.review import ReviewService
from bot.store import audit
from bot.store.jobs import JobRecord, JobStatus
from bot.store.moderation import ReviewItem
from tests.engine.harness import CHANNEL, GUILD, MEMBER, Harness, harness

OTHER_GUILD = 1002
MOD, MOD2 = 42, 43
PRICE = 78  # gpt-image-2 medium 1024x1024
FILTERED = "castle"  # the word the guild's prompt filter holds in these tests


class Clock:
    """A settable clock shared by the harness, the review service and the filters."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Moderation:
    h: Harness
    filters: PromptFilters
    review: ReviewService
    clock: Clock

    def request(
        self,
        prompt: str,
        *,
        guild: int = GUILD,
        member: int = MEMBER,
        quality: str = "medium",
    ) -> JobRequest:
        return JobRequest(
            Requester(guild, CHANNEL, member),
            Model.GPT_IMAGE_2,
            Operation.CREATE,
            RequestOptions(prompt=prompt, size="1024x1024", quality=quality),
            confirmed=True,
        )

    async def grant(self, amount: int, *, guild: int = GUILD, member: int = MEMBER) -> None:
        await self.h.db.write(
            self.h.ledger.grant_in, guild, member, amount, actor_id=None, reason="test"
        )

    async def available(self, *, guild: int = GUILD, member: int = MEMBER) -> int:
        return (await self.h.ledger.balance(guild, member)).available

    async def held(
        self, prompt: str = f"a {FILTERED} at dawn", *, guild: int = GUILD, member: int = MEMBER
    ) -> tuple[ReviewItem, JobRecord]:
        """A job the guild's prompt filter holds (the filter word is added once per guild)."""
        if not any(f.pattern == FILTERED for f in await self.filters.rules(guild)):
            await self.filters.add(guild, FILTERED, actor_id=MOD)
        job = await self.h.engine.submit(self.request(prompt, guild=guild, member=member))
        assert job.status is JobStatus.HELD
        item, announced = self.h.reviews.items[-1]
        assert announced.id == job.id and item.kind == "held" and item.status == "open"
        return item, job

    async def blocked(
        self, outcome: str = "block_charged", *, guild: int = GUILD, member: int = MEMBER
    ) -> tuple[ReviewItem, JobRecord]:
        """A job the orchestrator's filter blocked, settled and in the review queue."""
        self.h.sim.script(outcome)
        job = await self.h.engine.submit(
            self.request("a lighthouse at dusk", guild=guild, member=member)
        )
        await self.h.settle_all()
        item, announced = self.h.reviews.items[-1]
        assert announced.id == job.id and item.kind == "blocked" and item.status == "open"
        return item, await self.h.job(job.id)

    async def audit(self, action: str, guild: int = GUILD) -> list[audit.AuditEvent]:
        """The guild's audit events with this action, oldest first."""
        return list(reversed(await audit.events(self.h.db, guild_id=guild, action=action)))

    async def refunds(self, guild: int = GUILD) -> list:
        return [e for e in await self.h.ledger.entries(guild) if e.kind == "refund"]


@asynccontextmanager
async def moderation(tmp_path: Path, clock: Clock | None = None) -> AsyncIterator[Moderation]:
    clock = clock or Clock()
    async with harness(tmp_path, clock=clock, prompt_filters=True) as h:
        filters = h.filters
        assert filters is not None
        review = ReviewService(h.db, h.engine, h.jobs, h.ledger, h.moderation, h.guilds, clock)
        yield Moderation(h, filters, review, clock)


__all__ = [
    "CHANNEL",
    "FILTERED",
    "GUILD",
    "MEMBER",
    "MOD",
    "MOD2",
    "OTHER_GUILD",
    "PRICE",
    "Clock",
    "Moderation",
    "moderation",
]
