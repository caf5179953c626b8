"""The Buzz ledger's rules, each against a real SQLite file and a clock the test moves."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from datetime import UTC, datetime

import pytest

from bot.store import audit
from bot.store.db import Conn, Database
from bot.store.jobs import JobStore
from bot.store.ledger import (
    AlreadySettled,
    BudgetExhausted,
    InsufficientBuzz,
    InvalidAmount,
    Ledger,
    LedgerError,
)
from tests.store.conftest import (
    GUILD,
    MONDAY,
    OTHER_GUILD,
    Admit,
    Clock,
    account,
    assert_cache_matches_entries,
    entry_sum,
    grant,
    new_job,
    set_allowance,
    settle,
)


def execute(tx: Conn, sql: str) -> None:
    tx.execute(sql)


async def kinds(db: Database, member_id: int = 1, guild_id: int = GUILD) -> list[tuple[str, int]]:
    rows = await db.fetchall(
        "SELECT kind, amount FROM ledger_entries WHERE guild_id = ? AND member_id = ? ORDER BY id",
        (guild_id, member_id),
    )
    return [(r[0], r[1]) for r in rows]


async def refills(db: Database, member_id: int = 1, guild_id: int = GUILD) -> list[int]:
    return [a for k, a in await kinds(db, member_id, guild_id) if k == "refill"]


async def total(db: Database, member_id: int = 1, guild_id: int = GUILD) -> int:
    return sum(await account(db, member_id, guild_id))


# -- refills ----------------------------------------------------------------------------------


async def test_lazy_refill_once_per_period_tops_up_not_adds(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    # Nothing is written before first use.
    assert await account(db, 1) == (0, 0)
    h = await admit(300)
    assert await refills(db) == [1000]
    await settle(ledger, h.job_id, 300)
    assert await total(db) == 700

    clock.advance(days=2)  # Saturday: same ISO week, no second refill
    h = await admit(100)
    await settle(ledger, h.job_id, 100)
    assert await refills(db) == [1000]
    assert await total(db) == 600

    clock.set(MONDAY)  # a new week: topped up to 1,000 (adds 400), not 600 + 1,000
    h = await admit(50)
    assert await refills(db) == [1000, 400]
    await settle(ledger, h.job_id, 0)
    assert await account(db, 1) == (1000, 0)
    clock.advance(days=6, hours=23)  # still the same week
    await admit(10)
    assert await refills(db) == [1000, 400]
    await assert_cache_matches_entries(db)


async def test_full_bucket_gets_no_refill_entry(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 500, "daily")
    h = await admit(100)
    await settle(ledger, h.job_id, 0)
    clock.advance(days=1)
    await admit(100)
    assert await refills(db) == [500]  # bucket already full: nothing to top up
    assert await account(db, 1) == (400, 0)


async def test_balance_read_shows_pending_refill_without_writing(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.pending_refill, b.held, b.allowance_balance) == (1000, 1000, 0, 0)
    assert b.next_refill == MONDAY
    assert b.allowance.source == "guild default"
    row = await db.fetchone("SELECT COUNT(*) FROM ledger_entries")
    assert row is not None and row[0] == 0

    h = await admit(300)
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.pending_refill, b.held, b.spent_this_period) == (700, 0, 300, 0)
    await settle(ledger, h.job_id, 120)
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.held, b.spent_this_period) == (880, 0, 120)
    clock.set(MONDAY)
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.pending_refill, b.spent_this_period) == (1000, 120, 0)


async def test_grants_come_on_top_and_survive_refills(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    await grant(ledger, 1, 500)
    h = await admit(100)
    # Spending takes the allowance bucket first.
    assert (h.from_allowance, h.from_grant) == (100, 0)
    assert await account(db, 1) == (900, 500)
    await settle(ledger, h.job_id, 100)

    h = await admit(1200)  # 900 from the allowance, 300 from grants
    assert (h.from_allowance, h.from_grant) == (900, 300)
    await settle(ledger, h.job_id, 1200)
    assert await account(db, 1) == (0, 200)

    clock.set(MONDAY)
    await admit(1)
    # The refill fills the allowance bucket only; the grant left over is still there.
    assert await account(db, 1) == (999, 200)
    clock.advance(weeks=5)
    await admit(1)  # topped up to 1000 (the older hold is last period's), then 1 held
    assert await account(db, 1) == (999, 200)
    await assert_cache_matches_entries(db)


async def test_settle_release_goes_back_to_the_bucket_it_came_from(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await set_allowance(ledger, 100, "weekly")
    await grant(ledger, 1, 100)
    h = await admit(150)  # 100 allowance + 50 grant
    s = await settle(ledger, h.job_id, 120)  # captures the allowance part first
    assert (s.captured, s.released) == (120, 30)
    assert await account(db, 1) == (0, 80)


# -- allowance resolution -----------------------------------------------------------------------


async def test_allowance_resolution_order(db: Database, clock: Clock) -> None:
    ledger = Ledger(db, default_allowance=250, default_period="daily", clock=clock)
    ROLE_A, ROLE_B, ROLE_C = 11, 12, 13
    a = await db.read(ledger.allowance_in, GUILD, 1, [ROLE_A])
    assert (a.amount, a.period, a.source) == (250, "daily", "bot default")

    await set_allowance(ledger, 100, "weekly")
    a = await db.read(ledger.allowance_in, GUILD, 1, [])
    assert (a.amount, a.period, a.source) == (100, "weekly", "guild default")

    await set_allowance(ledger, 500, "monthly", scope="role", target_id=ROLE_A)
    await set_allowance(ledger, 800, "daily", scope="role", target_id=ROLE_B)
    await set_allowance(ledger, 300, "weekly", scope="role", target_id=ROLE_C)
    a = await db.read(ledger.allowance_in, GUILD, 1, [ROLE_A, ROLE_B, ROLE_C])
    assert (a.amount, a.period, a.source) == (800, "daily", f"role {ROLE_B}")
    a = await db.read(ledger.allowance_in, GUILD, 1, [ROLE_C, ROLE_A])
    assert (a.amount, a.source) == (500, f"role {ROLE_A}")
    # A role the member does not have does not count.
    a = await db.read(ledger.allowance_in, GUILD, 1, [99])
    assert a.source == "guild default"

    await set_allowance(ledger, 50, "none", scope="member", target_id=1)
    a = await db.read(ledger.allowance_in, GUILD, 1, [ROLE_A, ROLE_B])
    assert (a.amount, a.period, a.source) == (50, "none", "member override")
    # Only member 1 has the override.
    a = await db.read(ledger.allowance_in, GUILD, 2, [ROLE_B])
    assert a.source == f"role {ROLE_B}"

    def clear_twice(tx: Conn) -> tuple[bool, bool]:
        first = ledger.clear_allowance_in(tx, GUILD, "member", 1, actor_id=9)
        return first, ledger.clear_allowance_in(tx, GUILD, "member", 1, actor_id=9)

    assert await db.write(clear_twice) == (True, False)
    a = await db.read(ledger.allowance_in, GUILD, 1, [ROLE_A, ROLE_B])
    assert a.source == f"role {ROLE_B}"


async def test_refill_uses_the_resolved_allowance(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await set_allowance(ledger, 100, "weekly")
    await set_allowance(ledger, 700, "weekly", scope="role", target_id=5)
    await set_allowance(ledger, 400, "weekly", scope="role", target_id=6)
    await set_allowance(ledger, 60, "weekly", scope="member", target_id=3)
    await admit(1, member_id=1, roles=(5, 6))
    await admit(1, member_id=2)
    await admit(1, member_id=3, roles=(5, 6))
    assert await refills(db, 1) == [700]
    assert await refills(db, 2) == [100]
    assert await refills(db, 3) == [60]


async def test_bot_default_allowance_applies_without_rules(db: Database, clock: Clock) -> None:
    ledger = Ledger(db, default_allowance=300, default_period="weekly", clock=clock)
    h = await Admit(db, JobStore(db, clock), ledger)(200)
    assert h.from_allowance == 200
    assert await refills(db) == [300]


async def test_period_none_refills_once_ever(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "none")
    h = await admit(1000)
    await settle(ledger, h.job_id, 1000)
    clock.advance(days=400)
    with pytest.raises(InsufficientBuzz) as info:
        await admit(1)
    assert str(info.value) == "this needs 1 Buzz; you have 0"  # no refill to promise
    assert await refills(db) == [1000]
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.pending_refill, b.next_refill) == (0, 0, None)


async def test_period_switched_and_back_does_not_refill_twice(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """weekly → daily override → override cleared, in one week: no second weekly refill."""
    await set_allowance(ledger, 1000, "weekly")
    await settle(ledger, (await admit(600)).job_id, 600)
    await set_allowance(ledger, 100, "daily", scope="member", target_id=1)
    await admit(50)  # the daily rule: the bucket (400) is above 100, nothing to add
    await db.write(ledger.clear_allowance_in, GUILD, "member", 1, actor_id=9)
    b = await ledger.balance(GUILD, 1)
    assert (b.available, b.pending_refill) == (350, 0)
    await admit(10)  # back on the weekly rule, already refilled this week
    assert await refills(db) == [1000]
    assert await account(db, 1) == (340, 0)
    clock.set(MONDAY)
    await admit(1)
    # Open holds at a refill are from an earlier period: the top-up ignores them.
    assert await refills(db) == [1000, 1000 - 340]
    await assert_cache_matches_entries(db)


async def test_a_job_held_across_the_refill_does_not_cost_the_new_periods_allowance(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """Sunday's job waits (for a moderator, say) into Monday and is then charged: the member
    still gets Monday's full allowance."""
    await set_allowance(ledger, 1000, "weekly")
    clock.set(datetime(2025, 1, 12, 23, 50, tzinfo=UTC))  # Sunday night
    running = await admit(600)
    assert await account(db, 1) == (400, 0)
    clock.set(MONDAY)
    await admit(100)
    assert await refills(db) == [1000, 600]  # topped up to the allowance
    assert await account(db, 1) == (900, 0)
    await settle(ledger, running.job_id, 600)  # Sunday's job is charged: last week's money
    assert await account(db, 1) == (900, 0)
    await assert_cache_matches_entries(db)


async def test_allowance_held_across_the_refill_comes_back_only_up_to_the_allowance(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """Released after a refill, last period's held allowance is unused allowance of an earlier
    period: it expired at the refill, like any other."""
    await set_allowance(ledger, 1000, "weekly")
    clock.set(datetime(2025, 1, 12, 23, 50, tzinfo=UTC))
    running = await admit(600)
    clock.set(MONDAY)
    await admit(100)  # this week's own job holds 100 of this week's 1000
    await settle(ledger, running.job_id, 0)
    assert await account(db, 1) == (900, 0)
    rows = await db.fetchall(
        "SELECT kind, amount FROM ledger_entries WHERE job_id = ? ORDER BY id", (running.job_id,)
    )
    assert [tuple(r) for r in rows] == [("hold", 600), ("release", 600), ("adjust", 600)]
    await assert_cache_matches_entries(db)


async def test_refill_tops_up_to_the_allowance_whatever_is_held_from_before(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    first = await admit(300)
    await settle(ledger, (await admit(500)).job_id, 500)  # bucket 200, 300 held
    clock.set(MONDAY)
    await admit(1)
    assert await refills(db) == [1000, 800]  # 1000 - 200
    await settle(ledger, first.job_id, 0)
    assert await account(db, 1) == (999, 0)
    await assert_cache_matches_entries(db)


# -- holds ---------------------------------------------------------------------------------------


async def test_insufficient_buzz_message_has_the_numbers(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    h = await admit(700)
    await settle(ledger, h.job_id, 700)
    with pytest.raises(InsufficientBuzz) as info:
        await admit(572)
    assert str(info.value) == (
        "this needs 572 Buzz; you have 300, refilling to 1,000 on Monday 00:00 UTC"
    )
    assert (info.value.need, info.value.have) == (572, 300)
    assert info.value.next_refill == MONDAY
    # The refused admission left nothing behind: no job, no hold, balance untouched.
    row = await db.fetchone("SELECT COUNT(*) FROM holds")
    assert row is not None and row[0] == 1
    assert await total(db) == 300
    # Exactly the balance is fine.
    await admit(300)
    assert await total(db) == 0


async def test_insufficient_buzz_counts_grants_and_names_big_numbers(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await grant(ledger, 1, 1500)
    with pytest.raises(InsufficientBuzz) as info:
        await admit(12_345)
    assert str(info.value) == "this needs 12,345 Buzz; you have 1,500"
    await admit(1500)


# -- settlement ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charged", "captured", "released"), [(0, 0, 500), (200, 200, 300), (500, 500, 0)]
)
async def test_settle_capture_plus_release_is_the_hold(
    db: Database, ledger: Ledger, admit: Admit, charged: int, captured: int, released: int
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    h = await admit(500)
    s = await settle(ledger, h.job_id, charged)
    assert (s.amount, s.captured, s.released, s.extra_charged, s.loss) == (
        500,
        captured,
        released,
        0,
        0,
    )
    assert s.charged == charged
    row = await ledger.hold(h.job_id)
    assert row is not None
    assert (row.captured, row.released, row.settled_at is not None) == (
        captured,
        released,
        True,
    )
    assert await total(db) == 1000 - charged
    expected = [("refill", 1000), ("hold", 500)]
    expected += [("capture", captured)] if captured else []
    expected += [("release", released)] if released else []
    assert await kinds(db) == expected
    await assert_cache_matches_entries(db)


async def test_charge_above_the_hold_is_taken_from_the_balance(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    h = await admit(500)
    s = await settle(ledger, h.job_id, 700)
    assert (s.captured, s.released, s.extra_charged, s.loss, s.charged) == (500, 0, 200, 0, 700)
    assert await total(db) == 300
    assert await audit.events(db, GUILD, "ledger.guild_loss") == []


async def test_charge_above_the_balance_stops_at_zero_and_records_guild_loss(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await set_allowance(ledger, 400, "weekly")
    await grant(ledger, 1, 200)
    h = await admit(500)  # 400 allowance + 100 grant; 100 grant left
    s = await settle(ledger, h.job_id, 900)
    assert (s.captured, s.extra_charged, s.loss, s.charged) == (500, 100, 300, 600)
    assert await account(db, 1) == (0, 0)
    events = await audit.events(db, GUILD, "ledger.guild_loss")
    assert len(events) == 1
    assert events[0].target == "member:1"
    assert events[0].details == {"job_id": h.job_id, "charged": 900, "hold": 500, "loss": 300}
    row = await ledger.hold(h.job_id)
    assert row is not None and (row.extra_charged, row.loss) == (100, 300)
    await assert_cache_matches_entries(db)


async def test_settle_is_exactly_once(db: Database, ledger: Ledger, admit: Admit) -> None:
    await grant(ledger, 1, 1000)
    h = await admit(500)
    await settle(ledger, h.job_id, 100)
    before = await kinds(db)
    for charged in (100, 0, 700):
        with pytest.raises(AlreadySettled):
            await settle(ledger, h.job_id, charged)
    assert await kinds(db) == before
    assert await total(db) == 900
    with pytest.raises(LedgerError, match="no hold"):
        await settle(ledger, "never-held", 0)


async def test_two_tasks_racing_to_settle_one_hold(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await grant(ledger, 1, 1000)
    h = await admit(500)
    results = await asyncio.gather(
        settle(ledger, h.job_id, 0),
        settle(ledger, h.job_id, 500),
        settle(ledger, h.job_id, 800),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 2
    assert all(isinstance(e, AlreadySettled) for e in losses)
    win = wins[0]
    rows = await db.fetchall(
        "SELECT kind, amount FROM ledger_entries WHERE hold_id = ? AND kind != 'hold'", (h.id,)
    )
    # Only the winner's entries exist: one capture/release set, summing to the hold.
    expected = (win.captured > 0) + (win.released > 0) + (win.extra_charged > 0)
    assert len(rows) == expected
    assert sum(a for k, a in rows if k == "release") == win.released
    hold = await ledger.hold(h.job_id)
    assert hold is not None and hold.captured + hold.released == 500
    assert await total(db) == 1000 - win.charged
    await assert_cache_matches_entries(db)


# -- refunds -------------------------------------------------------------------------------------


async def test_refund_gives_back_only_what_was_charged_once(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    h = await admit(500)
    with pytest.raises(LedgerError, match="nothing settled"):
        await db.write(ledger.refund_in, h.job_id, actor_id=9, reason="early")
    await settle(ledger, h.job_id, 300)
    assert await total(db) == 700
    with pytest.raises(InvalidAmount, match="300"):
        await db.write(ledger.refund_in, h.job_id, actor_id=9, reason="too much", amount=301)
    assert await db.write(ledger.refund_in, h.job_id, actor_id=9, reason="part", amount=100) == 100
    assert await db.write(ledger.refund_in, h.job_id, actor_id=9, reason="rest") == 200
    assert await account(db, 1) == (700, 300)  # refunds come back as a grant
    for amount in (None, 1):
        with pytest.raises(InvalidAmount):
            await db.write(ledger.refund_in, h.job_id, actor_id=9, reason="again", amount=amount)
    assert await total(db) == 1000
    await assert_cache_matches_entries(db)


async def test_refund_of_a_free_job_and_of_an_over_charge(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await grant(ledger, 1, 1000)
    free = await admit(100)
    await settle(ledger, free.job_id, 0)
    with pytest.raises(InvalidAmount):
        await db.write(ledger.refund_in, free.job_id, actor_id=9, reason="nothing to give")
    over = await admit(100)
    await settle(ledger, over.job_id, 250)  # paid 250: 100 captured + 150 extra
    assert await db.write(ledger.refund_in, over.job_id, actor_id=9, reason="blocked") == 250
    assert await total(db) == 1000


@pytest.mark.parametrize("amount", [0, -5, True, 2.5])
async def test_refund_amount_must_be_a_positive_whole_number(
    db: Database, ledger: Ledger, admit: Admit, amount: object
) -> None:
    await grant(ledger, 1, 1000)
    h = await admit(100)
    await settle(ledger, h.job_id, 100)
    with pytest.raises(InvalidAmount):
        await db.write(ledger.refund_in, h.job_id, actor_id=9, reason="x", amount=amount)
    assert await total(db) == 900


# -- grants, takes, amounts ----------------------------------------------------------------------


async def test_take_refuses_beyond_the_balance_and_takes_grants_first(
    db: Database, ledger: Ledger, admit: Admit
) -> None:
    await set_allowance(ledger, 300, "weekly")
    await grant(ledger, 1, 200)
    await admit(100)  # refill 300, hold 100 from the allowance: buckets (200, 200)
    with pytest.raises(InvalidAmount, match="has 400 available"):
        await db.write(ledger.take_in, GUILD, 1, 401, actor_id=9, reason="too much")
    acct = await db.write(ledger.take_in, GUILD, 1, 250, actor_id=9, reason="abuse")
    assert (acct.allowance_balance, acct.grant_balance) == (150, 0)
    acct = await db.write(ledger.take_in, GUILD, 1, 150, actor_id=9, reason="all of it")
    assert acct.total == 0
    assert [e.action for e in await audit.events(db, GUILD, "ledger.take")] == ["ledger.take"] * 2
    await assert_cache_matches_entries(db)


BAD_AMOUNTS = [0, -1, -1000, 10_000_001, True, False, 1.5, "100", None]


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
async def test_bad_amounts_are_refused_everywhere(
    db: Database, ledger: Ledger, admit: Admit, amount: object
) -> None:
    await grant(ledger, 1, 1000)
    with pytest.raises(InvalidAmount, match="from 1 to 10,000,000"):
        await db.write(ledger.grant_in, GUILD, 1, amount, actor_id=9, reason="x")
    with pytest.raises(InvalidAmount, match="from 1 to 10,000,000"):
        await db.write(ledger.take_in, GUILD, 1, amount, actor_id=9, reason="x")

    def insert_and_hold(tx: Conn) -> None:
        admit.jobs.insert_in(tx, new_job("bad"))
        ledger.place_hold_in(tx, GUILD, 1, "bad", amount)  # type: ignore[arg-type]

    with pytest.raises(InvalidAmount, match="from 1 to 10,000,000"):
        await db.write(insert_and_hold)
    assert await total(db) == 1000
    row = await db.fetchone("SELECT COUNT(*) FROM holds")
    assert row is not None and row[0] == 0


@pytest.mark.parametrize("charged", [-1, 2**31, True, 3.0])
async def test_bad_charges_are_refused(
    db: Database, ledger: Ledger, admit: Admit, charged: object
) -> None:
    """A charge is what the orchestrator can report: a whole number up to its int32."""
    await grant(ledger, 1, 1000)
    h = await admit(100)
    with pytest.raises(InvalidAmount, match="from 0 to 2,147,483,647"):
        await settle(ledger, h.job_id, charged)  # type: ignore[arg-type]
    row = await ledger.hold(h.job_id)
    assert row is not None and row.settled_at is None


async def test_allowance_amounts_are_checked(db: Database, ledger: Ledger) -> None:
    await set_allowance(ledger, 0, "weekly")  # zero is a valid allowance
    await set_allowance(ledger, 10_000_000, "daily", scope="role", target_id=4)
    for bad in (-1, 10_000_001, True):
        with pytest.raises(InvalidAmount):
            await set_allowance(ledger, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fortnightly"):
        await set_allowance(ledger, 10, "fortnightly")


async def test_largest_grant_is_accepted(db: Database, ledger: Ledger) -> None:
    await grant(ledger, 1, 10_000_000)
    assert await account(db, 1) == (0, 10_000_000)


async def test_schema_refuses_negative_balances(db: Database, ledger: Ledger) -> None:
    """The last line of defence: the CHECK constraints abort a transaction gone wrong."""
    await grant(ledger, 1, 10)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.write(execute, "UPDATE accounts SET grant_balance = grant_balance - 11")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.write(execute, "UPDATE accounts SET allowance_balance = -1")
    assert await account(db, 1) == (0, 10)


# -- budget --------------------------------------------------------------------------------------


async def test_guild_budget_caps_all_members_and_resets_next_period(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 5000, "weekly")

    async def check(need: int) -> None:
        await db.write(ledger.check_budget_in, GUILD, need, 1000, "weekly")

    await check(1000)
    h1 = await admit(600, member_id=1)
    await admit(300, member_id=2)
    with pytest.raises(BudgetExhausted) as info:
        await check(101)
    assert info.value.remaining == 100
    assert str(info.value) == (
        "the server's Buzz budget is spent: this needs 101, 100 is left"
        " until it resets on Monday 00:00 UTC"
    )
    await check(100)
    # A settled job counts what it cost, not what it held.
    await settle(ledger, h1.job_id, 200)
    state = await ledger.budget_state(GUILD, 1000, "weekly")
    assert (state.used, state.remaining, state.next_reset) == (500, 500, MONDAY)
    await check(500)
    with pytest.raises(BudgetExhausted):
        await check(501)
    # Refunds give budget back; charges above the hold use it up.
    await db.write(ledger.refund_in, h1.job_id, actor_id=9, reason="x", amount=50)
    assert (await ledger.budget_state(GUILD, 1000, "weekly")).used == 450
    h3 = await admit(100, member_id=3)
    await settle(ledger, h3.job_id, 400)
    assert (await ledger.budget_state(GUILD, 1000, "weekly")).used == 850
    # Other guilds have their own budget.
    await db.write(ledger.check_budget_in, OTHER_GUILD, 1000, 1000, "weekly")
    clock.set(MONDAY)
    assert (await ledger.budget_state(GUILD, 1000, "weekly")).used == 0
    await check(1000)


async def test_budget_without_amount_is_unlimited_and_none_period_is_all_time(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await grant(ledger, 1, 5000)
    h = await admit(700)
    await settle(ledger, h.job_id, 700)
    await db.write(ledger.check_budget_in, GUILD, 10_000_000, None, None)
    clock.advance(days=800)
    state = await ledger.budget_state(GUILD, 1000, "none")
    assert (state.used, state.remaining, state.next_reset) == (700, 300, None)
    with pytest.raises(BudgetExhausted) as info:
        await db.write(ledger.check_budget_in, GUILD, 301, 1000, "none")
    assert "resets" not in str(info.value)


# -- isolation and bookkeeping -------------------------------------------------------------------


async def test_guilds_are_isolated(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly", guild_id=GUILD)
    await set_allowance(ledger, 2000, "weekly", scope="member", target_id=1, guild_id=GUILD)
    await grant(ledger, 1, 500, guild_id=GUILD)
    await admit(100, member_id=1, guild_id=GUILD)
    with pytest.raises(InsufficientBuzz) as info:
        await admit(1, member_id=1, guild_id=OTHER_GUILD)
    assert info.value.have == 0
    assert await account(db, 1, OTHER_GUILD) == (0, 0)
    b = await ledger.balance(OTHER_GUILD, 1)
    assert (b.available, b.allowance.source) == (0, "bot default")
    assert await account(db, 1, GUILD) == (1900, 500)
    await grant(ledger, 1, 30, guild_id=OTHER_GUILD)
    h = await admit(30, member_id=1, guild_id=OTHER_GUILD)
    assert (h.from_allowance, h.from_grant) == (0, 30)
    assert await account(db, 1, GUILD) == (1900, 500)
    # Buzz held in one guild does not count against a refill in another.
    await set_allowance(ledger, 400, "weekly", guild_id=OTHER_GUILD)
    clock.set(MONDAY)
    await admit(100, member_id=1, guild_id=OTHER_GUILD)
    assert await refills(db, 1, OTHER_GUILD) == [400]
    assert await account(db, 1, OTHER_GUILD) == (300, 0)
    assert {e.member_id for e in await ledger.entries(OTHER_GUILD)} == {1}
    assert len(await ledger.history(OTHER_GUILD, 1)) == 4


async def test_history_is_newest_first(db: Database, ledger: Ledger, admit: Admit) -> None:
    await set_allowance(ledger, 1000, "weekly")
    await grant(ledger, 1, 50)
    h = await admit(300)
    await settle(ledger, h.job_id, 100)
    await grant(ledger, 2, 5)  # another member's entry is not in member 1's history
    history = await ledger.history(GUILD, 1)
    assert [(e.kind, e.amount, e.delta) for e in history] == [
        ("release", 200, 200),
        ("capture", 100, 0),
        ("hold", 300, -300),
        ("grant", 50, 50),
        ("refill", 1000, 1000),  # due first: the grant is on top of this week's allowance
    ]
    ids = [e.id for e in history]
    assert ids == sorted(ids, reverse=True)
    assert history[0].job_id == h.job_id
    assert [e.kind for e in await ledger.history(GUILD, 1, limit=2)] == ["release", "capture"]


async def test_export_csv_matches_entries_with_running_balances(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    await grant(ledger, 1, 200)
    a = await admit(500, member_id=1)
    b = await admit(800, member_id=2)
    clock.advance(minutes=5)
    await settle(ledger, a.job_id, 900)
    await settle(ledger, b.job_id, 0)
    await grant(ledger, 3, 42)
    await db.write(ledger.take_in, GUILD, 3, 2, actor_id=9, reason="typo, fixed")
    await grant(ledger, 1, 7, guild_id=OTHER_GUILD)

    text = await ledger.export_csv(GUILD)
    rows = list(csv.DictReader(io.StringIO(text)))
    entries = await ledger.entries(GUILD)
    assert len(rows) == len(entries) > 0
    running: dict[int, int] = {}
    for row, e in zip(rows, entries, strict=True):
        assert int(row["entry_id"]) == e.id
        assert int(row["member_id"]) == e.member_id
        assert (row["kind"], int(row["amount"]), int(row["delta"])) == (e.kind, e.amount, e.delta)
        assert row["job_id"] == (e.job_id or "")
        assert row["reason"] == (e.reason or "")
        running[e.member_id] = running.get(e.member_id, 0) + e.delta
        assert int(row["balance_after"]) == running[e.member_id]
        assert int(row["balance_after"]) >= 0
    # The last running balance of each member is their balance.
    last = {int(r["member_id"]): int(r["balance_after"]) for r in rows}
    for member, value in last.items():
        assert value == await total(db, member)
    assert last == {1: 300, 2: 1000, 3: 1040}  # 3's weekly 1,000 came with the grant
    assert "typo, fixed" in text  # commas in reasons survive quoting


async def test_cached_balance_equals_entry_sums_after_everything(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 700, "daily")
    await set_allowance(ledger, 900, "daily", scope="role", target_id=5)
    for day in range(4):
        for member in (1, 2, 3):
            if day % 2:
                await grant(ledger, member, 100 * member)
            h = await admit(150 * member, member_id=member, roles=(5,) if member == 2 else ())
            await settle(ledger, h.job_id, (day * 97 * member) % 400)
        await db.write(ledger.take_in, GUILD, 3, 1, actor_id=9, reason="tax")
        clock.advance(days=1)
    await assert_cache_matches_entries(db)
    for member in (1, 2, 3):
        d_a, d_g = await entry_sum(db, member)
        assert await account(db, member) == (d_a, d_g)


async def test_a_job_held_across_a_lowered_allowance_costs_nothing_when_released(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """Alice's 600 waits for a moderator into Monday; bob asked for nothing. The admin lowers
    the allowance to 100, so Monday's refill adds nothing for either (a refill tops up, and
    both are above 100). The rejection must leave alice where bob is: it cost 600 before."""
    await set_allowance(ledger, 1000, "weekly")
    clock.set(datetime(2025, 1, 12, 23, 50, tzinfo=UTC))  # Sunday night
    waiting = await admit(600, member_id=1)
    await settle(ledger, (await admit(1, member_id=2)).job_id, 0)
    await set_allowance(ledger, 100, "weekly")
    clock.set(MONDAY)
    for member in (1, 2):
        await settle(ledger, (await admit(1, member_id=member)).job_id, 0)
    await settle(ledger, waiting.job_id, 0)  # rejected: nothing charged
    assert sum(await account(db, 1)) == sum(await account(db, 2)) == 1000
    await assert_cache_matches_entries(db)


async def test_what_was_spent_since_the_refill_stays_spent_when_an_old_hold_is_released(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """Had Sunday's 600 not waited, Monday's refill would have added nothing (400 + 600 is the
    allowance) and Monday's 300 would leave 700: releasing it later must end there too."""
    await set_allowance(ledger, 1000, "weekly")
    clock.set(datetime(2025, 1, 12, 23, 50, tzinfo=UTC))
    waiting = await admit(600)
    clock.set(MONDAY)
    await settle(ledger, (await admit(300)).job_id, 300)
    await settle(ledger, waiting.job_id, 0)
    assert await account(db, 1) == (700, 0)
    await assert_cache_matches_entries(db)


async def test_two_jobs_held_across_a_refill_expire_only_what_the_refill_added(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    await set_allowance(ledger, 1000, "weekly")
    clock.set(datetime(2025, 1, 12, 23, 50, tzinfo=UTC))
    spent = await admit(200)
    await settle(ledger, spent.job_id, 200)  # bucket 800
    first, second = await admit(300), await admit(300)  # bucket 200
    clock.set(MONDAY)
    await settle(ledger, (await admit(1)).job_id, 0)  # the refill adds 800
    await settle(ledger, first.job_id, 0)
    await settle(ledger, second.job_id, 0)
    # Without the waits: 800 at the refill, topped up by 200 to 1000; the rest expired.
    assert await account(db, 1) == (1000, 0)
    await assert_cache_matches_entries(db)
