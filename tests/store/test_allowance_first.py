"""Spending takes the allowance first, also when jobs overlap: the allowance a job gives back
(it failed, was canceled, cost less) pays for the member's later jobs that had to take grants
because that job held it. Else the grants are spent while the allowance sits unused, the next
refill tops it up only to the allowance, and the member has lost grants, which never expire.

Each case: weekly allowance 100 and a grant of 100 on Thursday; job A holds 78 (allowance),
job B then holds 78 (the 22 left of the allowance, 56 of the grant); A ends uncharged, B costs
78. Had B taken the allowance first, the member would keep 22 of the allowance and the whole
grant, and be topped up to 100 + 100 on Monday."""

from __future__ import annotations

import pytest

from bot.store.db import Database
from bot.store.ledger import Ledger
from tests.store.conftest import (
    MONDAY,
    Admit,
    Clock,
    account,
    assert_cache_matches_entries,
    grant,
    set_allowance,
    settle,
)


@pytest.fixture
async def overlapping(ledger: Ledger, admit: Admit) -> tuple[str, str]:
    await set_allowance(ledger, 100, "weekly")
    await grant(ledger, 1, 100)
    a, b = await admit(78), await admit(78)
    assert (a.from_allowance, b.from_allowance, b.from_grant) == (78, 22, 56)
    return a.job_id, b.job_id


@pytest.mark.parametrize("b_first", [False, True], ids=["a-ends-first", "b-ends-first"])
async def test_allowance_given_back_pays_for_a_later_job_instead_of_grants(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock, overlapping, b_first
) -> None:
    a, b = overlapping
    for job_id, charged in [(b, 78), (a, 0)] if b_first else [(a, 0), (b, 78)]:
        await settle(ledger, job_id, charged)
    assert await account(db, 1) == (22, 100)
    clock.set(MONDAY)
    await settle(ledger, (await admit(1)).job_id, 0)  # Monday's refill
    assert await account(db, 1) == (100, 100)
    await assert_cache_matches_entries(db)


@pytest.mark.parametrize("b_first", [False, True], ids=["a-ends-first", "b-ends-first"])
async def test_the_same_when_both_jobs_wait_across_the_refill(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock, overlapping, b_first
) -> None:
    a, b = overlapping
    clock.set(MONDAY)
    await settle(ledger, (await admit(1)).job_id, 0)  # the refill, both jobs still running
    for job_id, charged in [(b, 78), (a, 0)] if b_first else [(a, 0), (b, 78)]:
        await settle(ledger, job_id, charged)
    assert await account(db, 1) == (100, 100)
    await assert_cache_matches_entries(db)


async def test_a_later_job_that_ends_uncharged_gives_its_grant_part_back_as_grant(
    db: Database, ledger: Ledger, overlapping
) -> None:
    """B was moved onto the allowance A gave back; B ending uncharged returns allowance and
    grant to where they were before either job."""
    a, b = overlapping
    await settle(ledger, a, 0)
    await settle(ledger, b, 0)
    assert await account(db, 1) == (100, 100)
    await assert_cache_matches_entries(db)


async def test_allowance_given_back_across_a_smaller_refill_still_expires_what_it_added(
    db: Database, ledger: Ledger, admit: Admit, clock: Clock
) -> None:
    """A holds the whole allowance, B is paid from the grant; the allowance is lowered to 30
    and Monday's refill adds 30 only because A held it. A ends uncharged: 10 of its allowance
    pays for B instead of the grant, the rest comes back, and the 30 the refill added expire
    (had A never waited, the bucket would have held 90, above the new allowance: no top-up)."""
    await set_allowance(ledger, 100, "weekly")
    await grant(ledger, 1, 100)
    a, b = await admit(100), await admit(10)
    await settle(ledger, b.job_id, 10)
    await set_allowance(ledger, 30, "weekly")
    clock.set(MONDAY)
    await settle(ledger, (await admit(1)).job_id, 0)  # the refill adds 30, A still running
    await settle(ledger, a.job_id, 0)
    assert await account(db, 1) == (90, 100)
    await assert_cache_matches_entries(db)
