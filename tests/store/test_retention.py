"""Retention: old finished jobs lose their stored source images; nothing else is touched."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

import bot.store.retention as retention_mod
from bot.review import RESUME_RELEASES_WITHIN
from bot.store import audit, results
from bot.store.db import Conn, Database
from bot.store.jobs import JobStatus, JobStore, NewJob, SourceImage
from bot.store.ledger import Ledger
from bot.store.moderation import ModerationStore
from bot.store.results import StoredResult
from bot.store.retention import PruneReport, Retention, prune_daily
from bot.store.safety import SafetyStore
from bot.store.source_blobs import SourceBlobStore
from tests.store.conftest import GUILD, Clock

J = JobStatus
# The allowed way from queued to each ending.
PATHS = {
    J.DONE: [J.SUBMITTED, J.RUNNING, J.DELIVERING, J.DONE],
    J.FAILED: [J.FAILED],
    J.BLOCKED: [J.SUBMITTED, J.BLOCKED],
    J.CANCELED: [J.CANCELED],
    J.EXPIRED: [J.EXPIRED],
    J.RUNNING: [J.SUBMITTED, J.RUNNING],
}
IMAGE = b"\x89PNG" + bytes(range(256)) * 40  # 10,244 bytes
MASK = b"\x89PNG" + bytes(1000)


def edit_job(job_id: str) -> NewJob:
    return NewJob(
        id=job_id,
        guild_id=GUILD,
        channel_id=77,
        member_id=1,
        model="gpt-image-1",
        operation="editImage",
        options={"prompt": "make it blue"},
        step={"$type": "imageGen", "input": {"images": ["source://0"], "mask": "source://1"}},
        estimate=100,
        status=J.QUEUED,
    )


class Seed:
    """Edit jobs with two stored sources each, ended (or not) at the clock's time."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock
        self.jobs, self.ledger = JobStore(db, clock), Ledger(db, clock=clock)
        self.moderation = ModerationStore(db, clock)

    async def __call__(self, job_id: str, status: JobStatus, *, review_open: bool = False) -> None:
        def run(tx: Conn) -> None:
            self.ledger.grant_in(tx, GUILD, 1, 100, actor_id=None, reason="seed")
            self.jobs.insert_in(
                tx,
                edit_job(job_id),
                [
                    SourceImage("image", "image/png", 64, 64, IMAGE),
                    SourceImage("mask", "image/png", 64, 64, MASK),
                ],
            )
            self.ledger.place_hold_in(tx, GUILD, 1, job_id, 100)
            for step in PATHS[status]:
                self.jobs.transition_in(tx, job_id, step)
            if status in (J.DONE, J.FAILED, J.BLOCKED, J.CANCELED, J.EXPIRED):
                self.ledger.settle_in(tx, job_id, 0)
            if review_open:
                self.moderation.create_item_in(tx, GUILD, job_id, "blocked", "filter")

        await self.db.write(run)


@pytest.fixture
def seed(db: Database, clock: Clock) -> Seed:
    return Seed(db, clock)


async def stored_sources(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT job_id, COUNT(*) FROM job_sources GROUP BY job_id")
    return {r[0]: r[1] for r in rows}


async def snapshot(db: Database) -> dict[str, list[tuple]]:
    """Everything retention must keep: jobs, events, holds, ledger, review items."""
    out = {}
    for table in ("jobs", "job_events", "holds", "ledger_entries", "accounts", "review_items"):
        out[table] = [tuple(r) for r in await db.fetchall(f"SELECT * FROM {table} ORDER BY 1")]
    return out


async def prune_audits(db: Database) -> list[dict]:
    rows = await db.fetchall(
        "SELECT details FROM audit_events WHERE action = 'retention.prune' ORDER BY id"
    )
    return [json.loads(r[0]) for r in rows]


async def test_old_finished_jobs_lose_their_sources_and_nothing_else(
    db: Database, clock: Clock, seed: Seed
) -> None:
    await seed("old-done", J.DONE)
    await seed("old-failed", J.FAILED)
    await seed("old-running", J.RUNNING)  # still active: its sources may yet be submitted
    await seed("old-blocked-in-review", J.BLOCKED, review_open=True)  # moderators need them
    clock.advance(days=25)
    await seed("recent-done", J.DONE)
    clock.advance(days=6)  # the first ones ended 31 days ago, the recent one 6
    kept = await snapshot(db)

    retention = Retention(db, days=30, clock=clock)
    report = await retention.prune(trigger="test")

    assert (report.jobs, report.images) == (2, 4)
    assert report.bytes == 2 * (len(IMAGE) + len(MASK))
    assert await stored_sources(db) == {
        "old-running": 2,
        "old-blocked-in-review": 2,
        "recent-done": 2,
    }
    assert await snapshot(db) == kept  # jobs, history, money and review items untouched
    (audit,) = await prune_audits(db)
    assert audit["trigger"] == "test" and audit["days"] == 30
    assert (audit["jobs"], audit["images"], audit["bytes"]) == (2, 4, report.bytes)

    assert await retention.sources_pruned("old-done")
    assert not await retention.sources_pruned("recent-done")
    assert await JobStore(db).sources("old-done") == []

    # Once the recent job is old too, the next run takes it; the rest stay.
    clock.advance(days=25)
    again = await retention.prune(trigger="test")
    assert (again.jobs, again.images) == (1, 2)
    assert set(await stored_sources(db)) == {"old-running", "old-blocked-in-review"}


async def test_uploads_not_renewed_within_the_retention_are_forgotten(
    db: Database, clock: Clock
) -> None:
    blobs = SourceBlobStore(db, clock)
    await blobs.remember("old", "blob-old", "https://blobs.example/old", None, "pg")
    clock.advance(days=25)
    await blobs.remember("recent", "blob-recent", "https://blobs.example/recent", None)
    clock.advance(days=6)

    await Retention(db, days=30, clock=clock).prune(trigger="test")

    assert await blobs.blob("old") is None
    kept = await blobs.blob("recent")
    assert kept is not None and kept.url == "https://blobs.example/recent"
    (audit,) = await prune_audits(db)
    assert audit["uploads_forgotten"] == 1


async def test_checks_settled_before_the_cutoff_are_forgotten_open_ones_stay(
    db: Database, clock: Clock
) -> None:
    """Pre-moderation checks are written down one a request: settled ones past the retention
    go (their cost is counted and audited already); one still open stays however old, as its
    charge is still to be counted."""
    store = SafetyStore(db, clock)
    for check in ("old-settled", "old-open"):
        await store.open_check(GUILD, 7, f"j-{check}", check)
    await store.record_check(GUILD, 7, "j-old-settled", 3, check_id="old-settled", outcome="x")
    clock.advance(days=25)
    await store.open_check(GUILD, 7, "j-recent", "recent-settled")
    await store.record_check(GUILD, 7, "j-recent", 3, check_id="recent-settled", outcome="x")
    clock.advance(days=6)

    await Retention(db, days=30, clock=clock).prune(trigger="test")

    kept = await db.fetchall("SELECT external_id FROM premoderation_checks ORDER BY 1")
    assert [r[0] for r in kept] == ["old-open", "recent-settled"]
    assert [c.check_id for c in await store.open_checks()] == ["old-open"]
    (audit,) = await prune_audits(db)
    assert audit["checks_forgotten"] == 1


async def test_a_dry_run_reports_the_same_and_changes_nothing(
    db: Database, clock: Clock, seed: Seed
) -> None:
    await seed("old-canceled", J.CANCELED)
    await seed("old-expired", J.EXPIRED)
    clock.advance(days=31)
    await seed("new-done", J.DONE)
    before = await snapshot(db), await stored_sources(db)
    retention = Retention(db, days=30, clock=clock)

    preview = await retention.preview()

    assert preview.dry_run and (preview.jobs, preview.images) == (2, 4)
    assert (await snapshot(db), await stored_sources(db)) == before
    assert await prune_audits(db) == []
    done = await retention.prune(trigger="test")
    assert (done.jobs, done.images, done.bytes) == (preview.jobs, preview.images, preview.bytes)


async def test_a_run_that_finds_nothing_is_still_recorded(db: Database, clock: Clock) -> None:
    report = await Retention(db, days=30, clock=clock).prune(trigger="daily")
    assert (report.jobs, report.images, report.bytes) == (0, 0, 0)
    (audit,) = await prune_audits(db)
    assert audit["jobs"] == 0 and audit["trigger"] == "daily"


async def test_a_large_prune_goes_in_batches_each_audited(
    db: Database, clock: Clock, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_mod, "BATCH_JOBS", 2)
    for n in range(5):
        await seed(f"old-{n}", J.FAILED)
    clock.advance(days=40)

    report = await Retention(db, days=30, clock=clock).prune(trigger="test")

    assert (report.jobs, report.images) == (5, 10)
    assert await stored_sources(db) == {}
    audits = await prune_audits(db)
    assert [a["jobs"] for a in audits] == [2, 2, 1]
    assert len({a["run"] for a in audits}) == 1  # one run, three transactions


async def test_a_create_job_has_nothing_to_prune(db: Database, clock: Clock) -> None:
    jobs = JobStore(db, clock)
    job = NewJob(
        id="create",
        guild_id=GUILD,
        channel_id=1,
        member_id=1,
        model="gpt-image-2",
        operation="createImage",
        options={"prompt": "source://0 is just text here"},
        step={"$type": "imageGen", "input": {"prompt": "a source:// in the middle"}},
        estimate=10,
        status=J.QUEUED,
    )
    await db.write(jobs.insert_in, job)
    assert not await Retention(db, days=30, clock=clock).sources_pruned("create")
    assert not await Retention(db, days=30, clock=clock).sources_pruned("no-such-job")


async def test_the_daily_task_prunes_each_day_until_cancelled(
    db: Database, clock: Clock, seed: Seed
) -> None:
    await seed("ages", J.DONE)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            raise asyncio.CancelledError
        clock.advance(days=20)  # a day of the bot's life, as far as retention can tell

    with pytest.raises(asyncio.CancelledError):
        await prune_daily(db, 30, clock, sleep=sleep)

    assert pauses == [timedelta(days=1).total_seconds()] * 3
    assert [a["jobs"] for a in await prune_audits(db)] == [0, 0, 1]  # pruned when 40 days old
    assert await stored_sources(db) == {}


async def test_the_daily_task_survives_a_failed_run(
    db: Database, clock: Clock, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed("old", J.DONE)
    clock.advance(days=31)
    calls = 0
    real = Retention.prune

    async def flaky(self: Retention, *, trigger: str) -> PruneReport:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("database is locked")
        return await real(self, trigger=trigger)

    monkeypatch.setattr(Retention, "prune", flaky)
    pauses = 0

    async def sleep(seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 2:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await prune_daily(db, 30, clock, sleep=sleep)
    assert calls == 2
    assert await stored_sources(db) == {}


async def test_the_daily_task_ends_quietly_when_the_database_closes(
    db_path: Path, clock: Clock
) -> None:
    database = await Database(db_path).open()
    await database.close()
    await asyncio.wait_for(prune_daily(database, 30, clock), timeout=10)


async def test_a_release_not_yet_posted_keeps_the_images_it_will_post(
    db: Database, clock: Clock, seed: Seed
) -> None:
    """A moderator released a kept-back result weeks after its job ended, and the bot died
    before posting it: the prune at the next start runs before resume_releases, and must not
    take the images that release is about to post."""
    image = StoredResult(0, "image/png", 64, 64, IMAGE)

    async def kept_back(job_id: str) -> int:
        await seed(job_id, J.DONE)

        def run(tx: Conn) -> int:
            results.put_in(tx, job_id, [image])
            return seed.moderation.create_item_in(tx, GUILD, job_id, "mature", "rated r")

        return await db.write(run)

    async def audit_item(item_id: int, action: str, job_id: str) -> None:
        def run(tx: Conn) -> None:
            audit.record(
                tx,
                clock(),
                action,
                guild_id=GUILD,
                actor_id=9,
                target=f"review:{item_id}",
                job=job_id,
                channel=555,
            )

        await db.write(run)

    async def release(item_id: int, job_id: str) -> None:
        # What ReviewService records, in its transaction, before it posts.
        await db.write(seed.moderation.close_item_in, item_id, "released", 9)
        await audit_item(item_id, "review.release", job_id)

    stale, pending = await kept_back("stale"), await kept_back("pending")
    clock.advance(days=40)
    await release(stale, "stale")  # never carried out, and now too old to be resumed
    clock.advance(days=2)
    await release(pending, "pending")
    unposted = await seed.moderation.unposted_releases(clock() - RESUME_RELEASES_WITHIN)
    assert [item.id for item, _ in unposted] == [pending]

    report = await Retention(db, 30, clock).prune(trigger="daily")
    assert report.jobs == 1  # the stale one: resume_releases will not come back for it
    assert await results.load(db, "pending") == [image]
    assert await stored_sources(db) == {"pending": 2}

    # Once posted, its images go like any other old job's.
    await audit_item(pending, "review.released", "pending")
    report = await Retention(db, 30, clock).prune(trigger="daily")
    assert report.jobs == 1
    assert await results.load(db, "pending") == []
