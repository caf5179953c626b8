"""In-band result images (the OpenAI lane's): stored with the job, read back in order, and
deleted by retention with the job's sources, more than one batch of jobs at a time."""

from __future__ import annotations

import pytest

import bot.store.retention as retention_mod
from bot.store import results
from bot.store.db import Conn, Database
from bot.store.jobs import JobStatus, JobStore, NewJob
from bot.store.ledger import Ledger
from bot.store.results import StoredResult
from bot.store.retention import Retention
from tests.store.conftest import GUILD, Clock

J = JobStatus
IMAGE = b"\xff\xd8\xff" + bytes(range(256)) * 10


async def seed(db: Database, clock: Clock, job_id: str, images: int = 2) -> None:
    jobs, ledger = JobStore(db, clock), Ledger(db, clock=clock)

    def run(tx: Conn) -> None:
        ledger.grant_in(tx, GUILD, 1, 100, actor_id=None, reason="seed")
        jobs.insert_in(
            tx,
            NewJob(
                id=job_id,
                guild_id=GUILD,
                channel_id=7,
                member_id=1,
                model="gpt-image-1-mini",
                operation="createImage",
                options={"prompt": "p"},
                step={"$type": "openaiImages", "fields": {"prompt": "p"}},
                estimate=10,
                status=J.QUEUED,
            ),
        )
        ledger.place_hold_in(tx, GUILD, 1, job_id, 10)
        for status in (J.SUBMITTED, J.DELIVERING):
            jobs.transition_in(tx, job_id, status)
        ledger.settle_in(tx, job_id, 10)
        results.put_in(
            tx,
            job_id,
            [StoredResult(i, "image/jpeg", 64, 48, IMAGE + bytes([i])) for i in range(images)],
        )
        jobs.transition_in(tx, job_id, J.DONE)

    await db.write(run)


async def test_results_come_back_in_order(db: Database, clock: Clock) -> None:
    await seed(db, clock, "j1", images=3)
    stored = await results.load(db, "j1")
    assert [(r.index, r.mime, r.width, r.height) for r in stored] == [
        (i, "image/jpeg", 64, 48) for i in range(3)
    ]
    assert [r.data[-1] for r in stored] == [0, 1, 2]
    assert await results.load(db, "nothing") == []


async def test_retention_deletes_old_results_batch_after_batch(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_mod, "BATCH_JOBS", 2)
    for n in range(5):
        await seed(db, clock, f"old{n}")
    clock.advance(days=20)
    await seed(db, clock, "recent")
    clock.advance(days=11)
    retention = Retention(db, days=30, clock=clock)
    preview = await retention.preview()
    assert (preview.jobs, preview.images) == (5, 10)
    report = await retention.prune(trigger="test")
    assert (report.jobs, report.images) == (5, 10)
    assert report.bytes == sum(len(IMAGE) + 1 for _ in range(10))
    left = await db.fetchall("SELECT DISTINCT job_id FROM job_results")
    assert [r[0] for r in left] == ["recent"]
