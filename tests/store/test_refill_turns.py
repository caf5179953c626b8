"""Refills at period turns when the period's first use added nothing (the bucket was full):
the period still counts as refilled, whatever happens to the rule or the clock afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.store.db import Database
from bot.store.ledger import InsufficientBuzz, Ledger
from tests.store.conftest import (
    GUILD,
    MONDAY,
    Admit,
    Clock,
    account,
    assert_cache_matches_entries,
    grant,
    set_allowance,
    settle,
)


async def refills(db: Database, member_id: int = 1) -> list[int]:
    rows = await db.fetchall(
        "SELECT amount FROM ledger_entries WHERE guild_id = ? AND member_id = ?"
        " AND kind = 'refill' ORDER BY id",
        (GUILD, member_id),
    )
    return [r[0] for r in rows]


async def test_a_full_bucket_period_switched_and_back_is_not_refilled_twice(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """Monday's first use finds the bucket full: no top-up. The member spends it all; a daily
    override is set and cleared the same week. Back on the weekly rule, the week was already
    refilled: the balance must not show (or get) a second 1,000."""
    await set_allowance(ledger, 1000, "weekly")
    await settle(ledger, (await admit(1)).job_id, 0)  # last week: topped up to 1,000, unused
    clock.set(MONDAY)
    await settle(ledger, (await admit(1000)).job_id, 1000)  # this week's 1,000, all spent
    assert await refills(db) == [1000]
    await set_allowance(ledger, 100, "daily", scope="member", target_id=1)
    await settle(ledger, (await admit(100)).job_id, 100)  # today's 100 of the daily rule
    await db.write(ledger.clear_allowance_in, GUILD, "member", 1, actor_id=9)
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.pending_refill) == (0, 0)
    await admit_refused(admit)
    assert await account(db, 1) == (0, 0)
    assert await refills(db) == [1000, 100]
    await assert_cache_matches_entries(db)


async def test_the_clock_stepping_back_over_a_turn_does_not_refill_twice(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """NTP steps the clock back across midnight and forward again: each day is refilled at
    most once, even a day whose first use found the bucket full."""
    await set_allowance(ledger, 500, "daily")
    await grant(ledger, 1, 10)
    midnight = datetime(2025, 1, 10, tzinfo=UTC)
    clock.set(midnight - timedelta(minutes=5))
    await settle(ledger, (await admit(1)).job_id, 0)  # Thursday: topped up to 500, unused
    clock.set(midnight + timedelta(seconds=1))
    await settle(ledger, (await admit(500)).job_id, 500)  # Friday's 500 (no top-up), all spent
    clock.set(midnight - timedelta(seconds=2))  # the step back: Thursday again
    await settle(ledger, (await admit(4)).job_id, 4)  # paid from the grant
    clock.set(midnight + timedelta(seconds=3))  # Friday again
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.pending_refill) == (6, 0)
    await settle(ledger, (await admit(6)).job_id, 6)
    await admit_refused(admit)
    assert await refills(db) == [500]
    assert await account(db, 1) == (0, 0)
    await assert_cache_matches_entries(db)


async def admit_refused(admit: Admit) -> None:
    with pytest.raises(InsufficientBuzz):
        await admit(1)


async def test_a_job_charged_after_the_refill_leaves_nothing_to_expire_from_a_later_one(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """Sunday's job holds 10 across Monday's refill (which adds those 10) and is charged them:
    that refill was right, nothing of it is left to expire. A job held across the next
    Monday's refill, after the allowance was lowered to 40, then ends uncharged: only what that
    refill added because of it expires (40), not 10 more from the week before."""
    await set_allowance(ledger, 100, "weekly")
    clock.set(MONDAY - timedelta(minutes=10))
    sunday = await admit(10)
    clock.set(MONDAY)
    await settle(ledger, (await admit(1)).job_id, 0)  # the refill adds 10, Sunday's job held
    await settle(ledger, sunday.job_id, 10)
    waiting = await admit(100)
    await set_allowance(ledger, 40, "weekly")
    clock.set(MONDAY + timedelta(days=7))
    await settle(ledger, (await admit(1)).job_id, 0)  # the refill adds 40, the job held
    await settle(ledger, waiting.job_id, 0)
    # Had each job been charged when it was admitted: 100 all along (40 is below it).
    assert await account(db, 1) == (100, 0)
    await assert_cache_matches_entries(db)
