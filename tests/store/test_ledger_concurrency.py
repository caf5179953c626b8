"""1,000 admissions at once, then settled at random: the books balance and nothing goes negative."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from bot.store.db import Conn, Database
from bot.store.jobs import JobStore
from bot.store.ledger import AlreadySettled, InsufficientBuzz, Ledger, Settlement
from tests.store.conftest import (
    GUILD,
    MONDAY,
    Clock,
    assert_cache_matches_entries,
    grant,
    new_job,
    set_allowance,
)

MEMBERS = 50
JOBS_PER_MEMBER = 20
FIRST_ROUND = 12  # the rest are admitted after the weekly refill, while these still run
ROLE = 5


def roles_of(member: int) -> tuple[int, ...]:
    return (ROLE,) if member % 3 == 0 else ()


def allowance_of(member: int) -> int:
    if member % 5 == 0:
        return 150  # member override
    return 800 if member % 3 == 0 else 300


async def test_mass_admission_and_settlement(db: Database, clock: Clock) -> None:
    rng = random.Random(20250109)
    jobs, ledger = JobStore(db, clock), Ledger(db, clock=clock)
    await set_allowance(ledger, 300, "weekly")
    await set_allowance(ledger, 800, "weekly", scope="role", target_id=ROLE)
    for m in range(1, MEMBERS + 1):
        if m % 5 == 0:
            await set_allowance(ledger, 150, "weekly", scope="member", target_id=m)
        if m % 4 == 0:
            await grant(ledger, m, 250)

    async def admit(member: int, n: int, amount: int) -> tuple[str, int] | None:
        job_id = f"m{member}-j{n}"

        def step(tx: Conn) -> None:
            jobs.insert_in(tx, new_job(job_id, GUILD, member, estimate=amount))
            ledger.place_hold_in(tx, GUILD, member, job_id, amount, roles_of(member))

        try:
            await db.write(step)
        except InsufficientBuzz:
            return None
        return job_id, amount

    def requests(first: int, last: int) -> list:
        out = [
            admit(m, n, rng.randint(30, 250))
            for m in range(1, MEMBERS + 1)
            for n in range(first, last)
        ]
        rng.shuffle(out)
        return out

    admitted = [r for r in await asyncio.gather(*requests(0, FIRST_ROUND)) if r]
    clock.set(MONDAY)  # refills happen while the first round's Buzz is still held
    admitted += [r for r in await asyncio.gather(*requests(FIRST_ROUND, JOBS_PER_MEMBER)) if r]

    # The allowances cover only some of the jobs: every member got some and was refused some.
    per_member = defaultdict(int)
    for job_id, _ in admitted:
        per_member[int(job_id[1:].split("-")[0])] += 1
    assert set(per_member) == set(range(1, MEMBERS + 1))
    assert all(0 < n < JOBS_PER_MEMBER for n in per_member.values())
    row = await db.fetchone("SELECT COUNT(*) FROM jobs")
    assert row is not None and row[0] == len(admitted), "refused admissions left job rows"

    # Settle everything at once, each hold twice, with random charges (a third above the hold).
    charges: dict[str, int] = {}
    for job_id, amount in admitted:
        kind = rng.random()
        if kind < 0.15:
            charges[job_id] = 0
        elif kind < 0.65:
            charges[job_id] = rng.randint(1, amount)
        else:
            charges[job_id] = amount + rng.randint(1, 400)

    async def settle(job_id: str, charged: int) -> Settlement:
        return await db.write(ledger.settle_in, job_id, charged)

    attempts = [settle(j, charges[j]) for j, _ in admitted for _ in range(2)]
    rng.shuffle(attempts)
    results = await asyncio.gather(*attempts, return_exceptions=True)
    wins = [r for r in results if isinstance(r, Settlement)]
    already = [r for r in results if isinstance(r, AlreadySettled)]
    assert len(wins) == len(admitted) and len(already) == len(admitted)
    assert sorted(s.job_id for s in wins) == sorted(j for j, _ in admitted)

    # Every hold settled exactly once, capture + release = hold, the recorded charge is right.
    holds = await db.fetchall("SELECT * FROM holds")
    assert len(holds) == len(admitted)
    by_job = {s.job_id: s for s in wins}
    losses = 0
    for h in holds:
        s = by_job[h["job_id"]]
        assert h["settled_at"] is not None
        assert h["captured"] + h["released"] == h["amount"]
        assert h["from_allowance"] + h["from_grant"] == h["amount"]
        assert h["captured"] == min(charges[h["job_id"]], h["amount"])
        assert h["captured"] + h["extra_charged"] + h["loss"] == charges[h["job_id"]]
        assert (s.captured, s.released, s.extra_charged, s.loss) == (
            h["captured"],
            h["released"],
            h["extra_charged"],
            h["loss"],
        )
        losses += h["loss"] > 0
        entries = await db.fetchall(
            "SELECT kind, amount, delta_allowance + delta_grant AS d FROM ledger_entries"
            " WHERE hold_id = ? ORDER BY id",
            (h["id"],),
        )
        kinds = [e["kind"] for e in entries]
        assert kinds.count("hold") == 1 and kinds.count("release") <= 1
        assert kinds.count("capture") <= 2 and kinds.count("adjust") <= 1
        # An 'adjust' here is allowance held across the refill that expired on release.
        expired = sum(e["amount"] for e in entries if e["kind"] == "adjust")
        assert expired <= h["released"]
        assert sum(e["d"] for e in entries) == -(h["captured"] + h["extra_charged"] + expired)
    loss_events = await db.fetchone(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'ledger.guild_loss'"
    )
    assert loss_events is not None and loss_events[0] == losses > 0

    # No balance is negative now, nor was it after any entry (prefix sums per bucket).
    bad = await db.fetchone(
        "SELECT COUNT(*) FROM accounts WHERE allowance_balance < 0 OR grant_balance < 0"
    )
    assert bad is not None and bad[0] == 0
    running: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for e in await db.fetchall(
        "SELECT member_id, delta_allowance, delta_grant FROM ledger_entries ORDER BY id"
    ):
        r = running[e[0]]
        r[0] += e[1]
        r[1] += e[2]
        assert r[0] >= 0 and r[1] >= 0, f"member {e[0]} went negative"
    integrity = await db.fetchone("PRAGMA integrity_check")
    assert integrity is not None and integrity[0] == "ok"

    # Per member: Σ deltas = Σ refills + Σ grants − Σ charged − Σ expired, and the cache agrees.
    await assert_cache_matches_entries(db)
    for m in range(1, MEMBERS + 1):
        row = await db.fetchone(
            "SELECT COALESCE(SUM(delta_allowance + delta_grant), 0),"
            " COALESCE(SUM(CASE WHEN kind = 'refill' THEN amount END), 0),"
            " COALESCE(SUM(CASE WHEN kind = 'grant' THEN amount END), 0),"
            " COALESCE(SUM(CASE WHEN kind = 'adjust' THEN amount END), 0)"
            " FROM ledger_entries WHERE guild_id = ? AND member_id = ?",
            (GUILD, m),
        )
        paid = await db.fetchone(
            "SELECT COALESCE(SUM(captured + extra_charged), 0) FROM holds"
            " WHERE guild_id = ? AND member_id = ?",
            (GUILD, m),
        )
        assert row is not None and paid is not None
        deltas, refilled, granted, expired = row
        assert deltas == refilled + granted - paid[0] - expired, f"member {m}"
        assert granted == (250 if m % 4 == 0 else 0)
        # Two weeks: at most two refills, and the bucket never holds more than the allowance.
        refill_rows = await db.fetchall(
            "SELECT period_key FROM ledger_entries WHERE member_id = ? AND kind = 'refill'", (m,)
        )
        assert len(refill_rows) == len({r[0] for r in refill_rows}) <= 2
        acct = await db.fetchone(
            "SELECT allowance_balance FROM accounts WHERE guild_id = ? AND member_id = ?",
            (GUILD, m),
        )
        assert acct is not None and acct[0] <= allowance_of(m)
