"""Store fixtures: a real SQLite file per test, a clock the test moves, and an admit helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.store.db import Conn, Database
from bot.store.jobs import JobStatus, JobStore, NewJob
from bot.store.ledger import Hold, Ledger, Settlement

# Thursday 2025-01-09 12:00 UTC: the next weekly refill is Monday 2025-01-13 00:00 UTC.
THURSDAY = datetime(2025, 1, 9, 12, 0, tzinfo=UTC)
MONDAY = datetime(2025, 1, 13, 0, 0, tzinfo=UTC)
GUILD = 1001
OTHER_GUILD = 2002


class Clock:
    """A settable UTC clock for the stores' `clock=` parameter."""

    def __init__(self, now: datetime = THURSDAY) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return self.now


def new_job(
    job_id: str,
    guild_id: int = GUILD,
    member_id: int = 1,
    *,
    estimate: int = 100,
    status: JobStatus = JobStatus.QUEUED,
    channel_id: int = 77,
) -> NewJob:
    return NewJob(
        id=job_id,
        guild_id=guild_id,
        channel_id=channel_id,
        member_id=member_id,
        model="gpt-image-2",
        operation="createImage",
        options={"prompt": f"a picture for {job_id}"},
        step={"$type": "imageGen"},
        estimate=estimate,
        status=status,
    )


class Admit:
    """Insert a job and hold its Buzz in one transaction, as the engine's admission does."""

    def __init__(self, db: Database, jobs: JobStore, ledger: Ledger) -> None:
        self.db, self.jobs, self.ledger = db, jobs, ledger
        self.count = 0

    async def __call__(
        self,
        amount: int,
        member_id: int = 1,
        guild_id: int = GUILD,
        *,
        roles: tuple[int, ...] = (),
        job_id: str | None = None,
    ) -> Hold:
        self.count += 1
        job_id = job_id or f"job-{guild_id}-{member_id}-{self.count}"
        job = new_job(job_id, guild_id, member_id, estimate=amount)

        def step(tx: Conn) -> Hold:
            self.jobs.insert_in(tx, job)
            return self.ledger.place_hold_in(tx, guild_id, member_id, job.id, amount, roles)

        return await self.db.write(step)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with Database(db_path) as database:
        yield database


@pytest.fixture
def jobs(db: Database, clock: Clock) -> JobStore:
    return JobStore(db, clock)


@pytest.fixture
def ledger(db: Database, clock: Clock) -> Ledger:
    return Ledger(db, clock=clock)


@pytest.fixture
def admit(db: Database, jobs: JobStore, ledger: Ledger) -> Admit:
    return Admit(db, jobs, ledger)


async def set_allowance(
    ledger: Ledger,
    amount: int,
    period: str = "weekly",
    *,
    guild_id: int = GUILD,
    scope: str = "default",
    target_id: int = 0,
) -> None:
    await ledger.db.write(
        ledger.set_allowance_in, guild_id, scope, target_id, amount, period, actor_id=9
    )


async def grant(ledger: Ledger, member_id: int, amount: int, guild_id: int = GUILD) -> None:
    await ledger.db.write(
        ledger.grant_in, guild_id, member_id, amount, actor_id=9, reason="test grant"
    )


async def settle(ledger: Ledger, job_id: str, charged: int) -> Settlement:
    return await ledger.db.write(ledger.settle_in, job_id, charged)


async def account(db: Database, member_id: int, guild_id: int = GUILD) -> tuple[int, int]:
    """(allowance bucket, grant bucket) as cached in `accounts`; (0, 0) if no row yet."""
    row = await db.fetchone(
        "SELECT allowance_balance, grant_balance FROM accounts"
        " WHERE guild_id = ? AND member_id = ?",
        (guild_id, member_id),
    )
    return (row[0], row[1]) if row else (0, 0)


async def entry_sum(db: Database, member_id: int, guild_id: int = GUILD) -> tuple[int, int]:
    row = await db.fetchone(
        "SELECT COALESCE(SUM(delta_allowance), 0), COALESCE(SUM(delta_grant), 0)"
        " FROM ledger_entries WHERE guild_id = ? AND member_id = ?",
        (guild_id, member_id),
    )
    assert row is not None
    return row[0], row[1]


async def assert_cache_matches_entries(db: Database) -> None:
    """The cached buckets of every account equal the sums of its entries' deltas."""
    rows = await db.fetchall(
        "SELECT a.guild_id, a.member_id, a.allowance_balance, a.grant_balance,"
        " COALESCE(SUM(e.delta_allowance), 0), COALESCE(SUM(e.delta_grant), 0)"
        " FROM accounts a LEFT JOIN ledger_entries e"
        " ON e.guild_id = a.guild_id AND e.member_id = a.member_id"
        " GROUP BY a.guild_id, a.member_id"
    )
    for r in rows:
        assert (r[2], r[3]) == (r[4], r[5]), f"account {r[0]}/{r[1]} cache drifted from entries"
    orphans = await db.fetchone(
        "SELECT COUNT(*) FROM ledger_entries e WHERE NOT EXISTS (SELECT 1 FROM accounts a"
        " WHERE a.guild_id = e.guild_id AND a.member_id = e.member_id)"
    )
    assert orphans is not None and orphans[0] == 0
