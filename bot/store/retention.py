"""Retention: the stored images of finished jobs go after `retention.days`.

Source images (job_sources, up to 8 MiB each) and in-band results (job_results: the OpenAI
lane's images, which arrive as bytes) are the only large things a job keeps: the step holds
`source://N` references, and result_images only the images' ids and sizes (Details, the status
text and the refund share use them). So pruning deletes those rows of jobs that ended before
the cutoff; jobs, events, holds, ledger entries and audit rows stay for ever. A blocked job
whose review item is still open keeps its images for the moderators, and so does a released
result not yet posted (the bot died in between): the prune at start runs before the release is
resumed, which needs them.

Pruning runs in batches, each its own transaction with its own audit row, so the running bot's
writes wait for one batch at most, never for a whole first prune of an old database.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store import audit
from bot.store.db import Conn, Database, iso, row, rows, utcnow
from bot.store.jobs import FINAL, SOURCE_REF
from bot.store.moderation import RESUME_RELEASES_WITHIN, UNPOSTED_RELEASE
from bot.store.serial import ConnectionClosed

log = logging.getLogger(__name__)

BATCH_JOBS = 50
_FINAL = tuple(sorted(s.value for s in FINAL))
# Jobs whose sources are due: ended before the cutoff (finished_at; updated_at for a job that
# ended without one), not waiting on a moderator nor on a release to be resumed.
IMAGE_TABLES = ("job_sources", "job_results")


def _due(table: str) -> str:
    return (
        f"FROM {table} s JOIN jobs j ON j.id = s.job_id"
        f" WHERE j.status IN ({','.join('?' * len(_FINAL))})"
        " AND COALESCE(j.finished_at, j.updated_at) < ?"
        " AND NOT EXISTS (SELECT 1 FROM review_items i"
        f" WHERE i.job_id = j.id AND (i.status = 'open' OR ({UNPOSTED_RELEASE})))"
    )


_DUE = {table: _due(table) for table in IMAGE_TABLES}


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    jobs: int
    images: int
    bytes: int
    dry_run: bool


class Retention:
    def __init__(self, db: Database, days: int, clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.days, self.clock = db, days, clock

    def cutoff(self) -> datetime:
        return self.clock() - timedelta(days=self.days)

    def _params(self, cutoff: datetime) -> tuple[str, ...]:
        """_DUE's parameters: the final states, the cutoff, the oldest resumable release."""
        return (*_FINAL, iso(cutoff), iso(self.clock() - RESUME_RELEASES_WITHIN))

    async def preview(self) -> PruneReport:
        """What prune() would delete now, changing nothing."""
        cutoff = self.cutoff()
        jobs, images, size = await self.db.read(self._due_in, cutoff)
        return PruneReport(cutoff, jobs, images, size, dry_run=True)

    def _due_in(self, conn: Conn, cutoff: datetime) -> tuple[int, int, int]:
        ids: set[str] = set()
        images = size = 0
        for table in IMAGE_TABLES:
            for found in rows(
                conn,
                f"SELECT s.job_id, COUNT(*), SUM(LENGTH(s.data)) {_DUE[table]} GROUP BY s.job_id",
                self._params(cutoff),
            ):
                ids.add(found[0])
                images, size = images + found[1], size + found[2]
        return len(ids), images, size

    async def prune(self, *, trigger: str) -> PruneReport:
        """Delete every due source image, batch by batch; `trigger` goes into the audit rows."""
        cutoff = self.cutoff()
        run = secrets.token_hex(4)  # ties a run's audit rows together
        jobs = images = size = 0
        first = True
        while True:
            batch = await self.db.write(self._prune_batch, cutoff, run, trigger, first)
            jobs, images, size = jobs + batch[0], images + batch[1], size + batch[2]
            first = False
            if batch[0] < BATCH_JOBS:
                return PruneReport(cutoff, jobs, images, size, dry_run=False)

    def _prune_batch(
        self, tx: Conn, cutoff: datetime, run: str, trigger: str, first: bool
    ) -> tuple[int, int, int]:
        """The images of up to BATCH_JOBS due jobs: (jobs, images, bytes)."""
        union = " UNION ".join(f"SELECT s.job_id {_DUE[table]}" for table in IMAGE_TABLES)
        params = self._params(cutoff) * len(IMAGE_TABLES)
        due = rows(
            tx, f"SELECT job_id FROM ({union}) ORDER BY job_id LIMIT ?", (*params, BATCH_JOBS)
        )
        ids = [r[0] for r in due]
        images = size = 0
        if ids:
            marks = ",".join("?" * len(ids))
            for table in IMAGE_TABLES:  # a job's sources and results go together
                found = row(
                    tx,
                    f"SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM {table}"
                    f" WHERE job_id IN ({marks})",
                    ids,
                )
                assert found is not None
                images, size = images + found[0], size + found[1]
                tx.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", ids)
        counts = (len(ids), images, size)
        forgotten = checks = 0
        if first:
            # Uploads of sources not sent for as long: their signed URLs point at members'
            # images upstream, and a re-roll this late uploads the bytes again anyway.
            forgotten = tx.execute(
                "DELETE FROM source_blobs WHERE renewed_at < ?", (iso(cutoff),)
            ).rowcount
            # Pre-moderation checks settled as long ago: counted already (guild_charges and
            # the audit keep their cost); an open one stays until it is counted.
            checks = tx.execute(
                "DELETE FROM premoderation_checks WHERE settled_at < ?", (iso(cutoff),)
            ).rowcount
        if ids or first:  # every run leaves a trace, even one that found nothing
            audit.record(
                tx,
                self.clock(),
                "retention.prune",
                run=run,
                trigger=trigger,
                days=self.days,
                cutoff=iso(cutoff),
                jobs=counts[0],
                images=counts[1],
                bytes=counts[2],
                uploads_forgotten=forgotten,
                checks_forgotten=checks,
            )
        return counts

    def sources_pruned_in(self, conn: Conn, job_id: str) -> bool:
        """True when the job's step refers to stored sources that are no longer there: they
        were pruned (a job and its sources are inserted in one transaction)."""
        found = row(
            conn,
            "SELECT EXISTS (SELECT 1 FROM json_tree(jobs.step)"
            "  WHERE type = 'text' AND substr(value, 1, ?) = ?),"
            " EXISTS (SELECT 1 FROM job_sources WHERE job_id = jobs.id)"
            " FROM jobs WHERE id = ?",
            (len(SOURCE_REF), SOURCE_REF, job_id),
        )
        return found is not None and bool(found[0]) and not found[1]

    async def sources_pruned(self, job_id: str) -> bool:
        return await self.db.read(self.sources_pruned_in, job_id)


async def prune_daily(
    db: Database,
    days: int,
    clock: Callable[[], datetime] = utcnow,
    *,
    every: timedelta = timedelta(days=1),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """The running bot's retention: prune now, then once every `every`, until cancelled."""
    retention = Retention(db, days, clock)
    while True:
        try:
            report = await retention.prune(trigger="daily")
        except ConnectionClosed:  # the bot is shutting down
            return
        except sqlite3.OperationalError as exc:  # e.g. the CLI held the lock past the timeout
            log.warning("retention: pruning failed, trying again later: %s", exc)
        except Exception:
            log.exception("retention: pruning failed")
        else:
            if report.jobs:
                log.info(
                    "retention: deleted %d source image(s) of %d job(s) that ended before %s"
                    " (%d bytes)",
                    report.images,
                    report.jobs,
                    iso(report.cutoff),
                    report.bytes,
                )
        await sleep(every.total_seconds())
