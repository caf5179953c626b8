"""Ledger throughput: hold + settle with 50 members at once, on a real SQLite file.

    python bench/ledger.py [--members 50] [--jobs-per-member 40] [--runs 5]

Each member's task admits a job (job row + hold, one transaction) and settles it (capture +
release, one transaction), over and over; all members run concurrently. An "op" is one hold
or one settle (each a BEGIN IMMEDIATE … COMMIT). Target: ≥ 2 000 ops/s. Prints the median
and the spread over the runs.
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

from bot.store.db import Conn, Database  # noqa: E402
from bot.store.jobs import JobStatus, JobStore, NewJob  # noqa: E402
from bot.store.ledger import Ledger  # noqa: E402

GUILD = 1


async def one_run(members: int, per_member: int, seed: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Database(Path(tmp) / "ledger.sqlite3") as db:
            ledger, jobs = Ledger(db), JobStore(db)

            def grants(tx: Conn) -> None:
                for member in range(members):
                    ledger.grant(tx, GUILD, member, 10**7, actor_id=None, reason="bench")

            await db.write(grants)

            def admit(tx: Conn, member: int, job_id: str, amount: int) -> None:
                jobs.insert(
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
                ledger.hold(tx, GUILD, member, job_id, amount)

            async def member_loop(member: int) -> int:
                rng = random.Random(seed * 1000 + member)
                ops = 0
                for n in range(per_member):
                    job_id = f"b{member}x{n}"
                    amount = rng.choice((13, 78, 286, 375, 533))
                    await db.write(admit, member, job_id, amount)
                    await db.write(ledger.settle, job_id, rng.randint(0, amount))
                    ops += 2
                return ops

            started = time.perf_counter()
            counts = await asyncio.gather(*(member_loop(m) for m in range(members)))
            elapsed = time.perf_counter() - started
            # The books must still balance after the load.
            row = await db.fetchone(
                "SELECT COUNT(*) FROM holds"
                " WHERE settled_at IS NULL OR captured + released != amount"
            )
            assert row[0] == 0
            return sum(counts) / elapsed, sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--jobs-per-member", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rates = []
    for run in range(args.runs):
        rate, ops = asyncio.run(one_run(args.members, args.jobs_per_member, run))
        rates.append(rate)
        print(f"run {run + 1}: {ops} ops in {ops / rate:.2f} s = {rate:,.0f} ops/s")
    median = statistics.median(rates)
    print(
        f"ledger hold+settle, {args.members} members concurrent: median {median:,.0f} ops/s"
        f" (min {min(rates):,.0f}, max {max(rates):,.0f}); target >= 2,000 ops/s"
    )


if __name__ == "__main__":
    main()
