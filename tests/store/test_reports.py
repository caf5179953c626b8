"""Spending reports against a seeded ledger in a real SQLite file: what each UTC day cost per
model (captures of settled holds net of refunds, on the day they were asked: the budget's day)
and the top spenders, for one guild only, and what running jobs hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from bot.store.db import Conn, Database
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from bot.store.reports import Spender, SpendingReports
from bot.store.safety import SafetyStore
from tests.store.conftest import GUILD, OTHER_GUILD, Clock, grant, new_job, settle

NOW = datetime(2025, 1, 9, 12, 0, tzinfo=UTC)


def at(day: int, hour: int = 12, minute: int = 0, month: int = 1, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class Seed:
    """Jobs of any model whose holds are made and settled at the moments the test names."""

    def __init__(self, db: Database, ledger: Ledger, clock: Clock) -> None:
        self.db, self.ledger, self.clock = db, ledger, clock
        self.jobs = JobStore(db, clock)
        self.count = 0

    async def job(
        self,
        model: str,
        member: int,
        charged: int | None,
        *,
        held_at: datetime,
        settled_at: datetime | None = None,
        hold: int = 300,
        guild: int = GUILD,
    ) -> str:
        self.count += 1
        job = replace(new_job(f"job-{self.count}", guild, member, estimate=hold), model=model)
        await grant(self.ledger, member, 10_000, guild)
        self.clock.set(held_at)

        def admit(tx: Conn) -> None:
            self.jobs.insert_in(tx, job)
            self.ledger.place_hold_in(tx, guild, member, job.id, hold)

        await self.db.write(admit)
        if charged is not None:
            self.clock.set(settled_at or held_at)
            await settle(self.ledger, job.id, charged)
        self.clock.set(NOW)
        return job.id

    async def refund(self, job_id: str, when: datetime, amount: int | None = None) -> None:
        self.clock.set(when)
        await self.db.write(
            self.ledger.refund_in, job_id, actor_id=9, reason="moderator", amount=amount
        )
        self.clock.set(NOW)


@pytest.fixture
def seed(db: Database, ledger: Ledger, clock: Clock) -> Seed:
    return Seed(db, ledger, clock)


@pytest.fixture
def reports(db: Database, clock: Clock) -> SpendingReports:
    clock.set(NOW)
    return SpendingReports(db, clock)


async def test_spending_per_day_and_model_net_of_refunds_for_one_guild_only(
    seed: Seed, reports: SpendingReports
) -> None:
    await seed.job("gpt-image-2", 1, 286, held_at=at(5))
    await seed.job("gpt-image-2", 1, 78, held_at=at(7, 9))
    await seed.job("dall-e-3", 2, 300, held_at=at(7, 10))
    # Asked late on the 7th, settled after midnight: it counts on the 7th, as in the budget.
    await seed.job("gpt-image-1", 3, 100, held_at=at(7, 23, 50), settled_at=at(8, 0, 10))
    # A moderator refunded this one in full on the 9th: the 8th shows nothing for it.
    refunded = await seed.job("dall-e-3", 2, 300, held_at=at(8, 15))
    await seed.refund(refunded, at(9, 9))
    # Partly refunded: 240 of 300 stays spent, still on the day it was charged.
    partly = await seed.job("dall-e-3", 4, 300, held_at=at(6, 8))
    await seed.refund(partly, at(9, 10), amount=60)
    # Charged above the hold: the member paid 150 in all.
    await seed.job("gpt-image-1", 3, 150, held_at=at(9, 8), hold=100)
    await seed.job("gpt-image-2", 1, 0, held_at=at(9, 9))  # failed: nothing charged
    await seed.job("gpt-image-2", 5, None, held_at=at(9, 11))  # still running: only held
    await seed.job("gpt-image-2", 1, 5000, held_at=at(8), guild=OTHER_GUILD)
    await seed.job("dall-e-2", 6, 300, held_at=at(20, month=12, year=2024))  # before the window

    report = await reports.spending(GUILD, 10)

    assert report.days == (date(2024, 12, 31), *(date(2025, 1, n) for n in range(1, 10)))
    assert report.by_day == {
        (date(2025, 1, 5), "gpt-image-2"): 286,
        (date(2025, 1, 6), "dall-e-3"): 240,
        (date(2025, 1, 7), "dall-e-3"): 300,
        (date(2025, 1, 7), "gpt-image-2"): 78,
        (date(2025, 1, 7), "gpt-image-1"): 100,
        (date(2025, 1, 9), "gpt-image-1"): 150,
    }
    assert report.total == 1154
    assert report.day_total(date(2025, 1, 7)) == 478
    assert report.day_total(date(2025, 1, 8)) == 0
    assert report.model_totals() == {"gpt-image-2": 364, "dall-e-3": 540, "gpt-image-1": 250}
    assert report.models == ("dall-e-3", "gpt-image-2", "gpt-image-1")
    # The refunded job left member 2 with 300; the running job's member 5 spent nothing yet.
    assert report.top == (Spender(1, 364), Spender(2, 300), Spender(3, 250), Spender(4, 240))
    assert report.held == 300  # the running job's hold: not spent yet, shown apart

    # A longer window reaches the December job; the other guild's spending never appears.
    month = await reports.spending(GUILD, 30)
    assert month.by_day[(date(2024, 12, 20), "dall-e-2")] == 300
    assert month.total == 1454
    other = await reports.spending(OTHER_GUILD, 30)
    assert other.by_day == {(date(2025, 1, 8), "gpt-image-2"): 5000}
    assert other.top == (Spender(1, 5000),)


async def test_the_window_is_whole_utc_days_today_included(
    seed: Seed, reports: SpendingReports
) -> None:
    await seed.job("gpt-image-2", 1, 13, held_at=at(31, 23, 59, month=12, year=2024))
    await seed.job("gpt-image-2", 1, 26, held_at=at(1, 0, 0))  # the first instant of the window
    await seed.job("gpt-image-2", 1, 52, held_at=at(9, 11, 59))  # today, before "now"

    report = await reports.spending(GUILD, 9)

    assert report.days[0] == date(2025, 1, 1) and report.days[-1] == date(2025, 1, 9)
    assert report.by_day == {
        (date(2025, 1, 1), "gpt-image-2"): 26,
        (date(2025, 1, 9), "gpt-image-2"): 52,
    }
    today = await reports.spending(GUILD, 1)
    assert today.days == (date(2025, 1, 9),) and today.total == 52
    for bad in (0, 91):
        with pytest.raises(ValueError, match="days must be from 1 to 90"):
            await reports.spending(GUILD, bad)


async def test_top_spenders_are_the_five_biggest_ties_by_member_id(
    seed: Seed, reports: SpendingReports
) -> None:
    for member, charged in ((7, 100), (3, 300), (9, 100), (4, 50), (8, 200), (2, 100)):
        await seed.job("dall-e-2", member, charged, held_at=at(8))

    report = await reports.spending(GUILD, 30)

    assert report.top == (
        Spender(3, 300),
        Spender(8, 200),
        Spender(2, 100),
        Spender(7, 100),
        Spender(9, 100),
    )


async def test_no_spending_is_an_empty_report(seed: Seed, reports: SpendingReports) -> None:
    await seed.job("gpt-image-2", 1, 0, held_at=at(8))
    report = await reports.spending(GUILD, 30)
    assert report.total == 0 and report.by_day == {} and report.top == ()
    assert len(report.days) == 30


async def test_what_the_server_paid_for_checks_is_reported_beside_the_spending(
    seed: Seed, reports: SpendingReports, db: Database, clock: Clock
) -> None:
    safety = SafetyStore(db, clock)
    await seed.job("gpt-image-2", 1, 78, held_at=at(8))
    for when, guild, cost in [(at(8), GUILD, 2), (at(9, 1), GUILD, 3), (at(9), OTHER_GUILD, 50)]:
        clock.set(when)
        await safety.record_check(guild, 1, f"check-{when:%d%H}-{guild}", cost, flagged=False)
    clock.set(at(1, 12, 0, month=12, year=2024))  # long before the window
    await safety.record_check(GUILD, 1, "old", 7, flagged=False)
    clock.set(NOW)
    report = await reports.spending(GUILD, 7)
    assert report.total == 78 and report.server_paid == 5  # members' spending stays apart
    assert (await reports.spending(GUILD, 1)).server_paid == 3


async def test_a_day_counts_what_was_asked_on_it_as_the_budget_does(
    seed: Seed, reports: SpendingReports, ledger: Ledger
) -> None:
    # Asked yesterday just before midnight, settled today: yesterday's, as in a daily budget.
    await seed.job("gpt-image-2", 1, 90, held_at=at(8, 23, 59), settled_at=at(9, 0, 5))
    await seed.job("gpt-image-2", 1, 40, held_at=at(9, 1))
    await seed.job("gpt-image-2", 2, None, held_at=at(9, 2), hold=250)  # still running
    await seed.job("gpt-image-2", 2, None, held_at=at(9, 2), hold=7, guild=OTHER_GUILD)

    today = await reports.spending(GUILD, 1)
    budget = await ledger.budget_state(GUILD, 10_000, "daily")

    assert today.by_day == {(date(2025, 1, 9), "gpt-image-2"): 40}
    # The budget's "used" today is today's spending plus what running jobs hold.
    assert budget.used == today.total + today.held == 290
    assert (await reports.spending(GUILD, 2)).day_total(date(2025, 1, 8)) == 90
