"""Ledger throughput: hold + settle with 50 members at once, on a real SQLite file.

    python bench/ledger.py [--members 50] [--jobs-per-member 40] [--runs 5]

Each member's task runs a job's money path the way bot/engine/engine.py commits it, over and
over; all members run concurrently:
- admit (an op): the concurrency count, the guild budget check, the job row (queued) and its
  hold, in one transaction (Engine.submit's `admit`);
- submitted: the job's transition to submitted with its workflow id, a transaction of its own
  as in Engine._submit (not counted as an op, but its time is in the figure);
- settle (an op): the job's transition to delivering with what was charged, the workflow's
  status and result images, and the ledger's capture + release, in one transaction
  (Engine._conclude's `settle`).
An "op" is one hold or one settle (each a BEGIN IMMEDIATE … COMMIT that also changes the job's
state). Target: ≥ 2 000 ops/s. Prints the median and the spread over the runs, and every
transaction per second as well.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import GuildDefaults  # noqa: E402
from bot.store.db import Conn, Database, utcnow  # noqa: E402
from bot.store.guilds import GuildStore  # noqa: E402
from bot.store.jobs import JobStatus, JobStore, NewJob  # noqa: E402
from bot.store.ledger import Ledger  # noqa: E402

GUILD = 1


async def one_run(members: int, per_member: int, seed: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Database(Path(tmp) / "ledger.sqlite3") as db:
            ledger, jobs, guilds = Ledger(db), JobStore(db), GuildStore(db, GuildDefaults())
            settings = await guilds.settings(GUILD)

            def grants(tx: Conn) -> None:
                for member in range(members):
                    ledger.grant_in(tx, GUILD, member, 10**7, actor_id=None, reason="bench")

            await db.write(grants)

            def admit(tx: Conn, member: int, job_id: str, amount: int) -> None:
                # As Engine.submit's admit: limits, budget, job row and hold together.
                mine, theirs = jobs.in_flight_in(tx, GUILD, member)
                assert mine < 10**6 and theirs < 10**6
                ledger.check_budget_in(
                    tx, GUILD, amount, settings.budget_amount, settings.budget_period
                )
                jobs.insert_in(
                    tx,
                    NewJob(
                        id=job_id,
                        guild_id=GUILD,
                        channel_id=1,
                        member_id=member,
                        model="gpt-image-2",
                        operation="createImage",
                        options={"prompt": "bench"},
                        step={},
                        estimate=amount,
                        status=JobStatus.QUEUED,
                    ),
                )
                ledger.place_hold_in(tx, GUILD, member, job_id, amount)

            def settle(tx: Conn, job_id: str, charged: int) -> None:
                # As Engine._conclude's settle: the job's ending and its money together.
                jobs.transition_in(
                    tx,
                    job_id,
                    JobStatus.DELIVERING,
                    charged=charged,
                    workflow_status="succeeded",
                    result_images=[{"blob_id": f"wf_{job_id}-0", "width": 1024, "height": 1024}],
                    error=None,
                    started_at=utcnow(),
                )
                ledger.settle_in(tx, job_id, charged)

            async def member_loop(member: int) -> tuple[int, int]:
                rng = random.Random(seed * 1000 + member)
                ops = transactions = 0
                for n in range(per_member):
                    job_id = f"b{member}x{n}"
                    amount = rng.choice((13, 78, 286, 375, 533))
                    await db.write(admit, member, job_id, amount)
                    await db.write(
                        jobs.transition_in,
                        job_id,
                        JobStatus.SUBMITTED,
                        workflow_id=f"wf_{job_id}",
                        workflow_status="unassigned",
                        submitted_at=utcnow(),
                    )
                    await db.write(settle, job_id, rng.randint(0, amount))
                    ops += 2
                    transactions += 3
                return ops, transactions

            started = time.perf_counter()
            counts = await asyncio.gather(*(member_loop(m) for m in range(members)))
            elapsed = time.perf_counter() - started
            # The books must still balance after the load, and every job be settled.
            row = await db.fetchone(
                "SELECT COUNT(*) FROM holds"
                " WHERE settled_at IS NULL OR captured + released != amount"
            )
            assert row[0] == 0
            row = await db.fetchone(
                "SELECT COUNT(*) FROM jobs WHERE status != 'delivering' OR charged IS NULL"
            )
            assert row[0] == 0
            ops = sum(o for o, _ in counts)
            transactions = sum(t for _, t in counts)
            return ops / elapsed, ops, transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--jobs-per-member", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rates, tx_rates = [], []
    for run in range(args.runs):
        rate, ops, transactions = asyncio.run(one_run(args.members, args.jobs_per_member, run))
        seconds = ops / rate
        rates.append(rate)
        tx_rates.append(transactions / seconds)
        print(
            f"run {run + 1}: {ops} ops ({transactions} transactions) in {seconds:.2f} s"
            f" = {rate:,.0f} ops/s"
        )
    median = statistics.median(rates)
    print(
        f"ledger hold+settle with the job's state change, {args.members} members concurrent:"
        f" median {median:,.0f} ops/s (min {min(rates):,.0f}, max {max(rates):,.0f});"
        f" target >= 2,000 ops/s {'(meets)' if median >= 2000 else '(MISSES)'}"
    )
    every = statistics.median(tx_rates)
    print(f"  all transactions (with the submitted transition): {every:,.0f}/s")


if __name__ == "__main__":
    main()
