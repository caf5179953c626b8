"""Jobs: everything needed to show, re-roll and audit one request, and its status history."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.store.db import Conn, Database, Row, iso, utcnow
from bot.store.db import row as fetch_row


class JobStatus(StrEnum):
    HELD = "held"
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"


J = JobStatus
FINAL = frozenset({J.DONE, J.FAILED, J.BLOCKED, J.CANCELED, J.EXPIRED, J.REJECTED})
# Jobs the engine must drive (and resume after a restart).
ACTIVE = frozenset({J.QUEUED, J.SUBMITTED, J.RUNNING, J.DELIVERING})
# Jobs that occupy the orchestrator, for the concurrency limits.
IN_FLIGHT = frozenset({J.QUEUED, J.SUBMITTED, J.RUNNING})
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    J.HELD: frozenset({J.QUEUED, J.REJECTED, J.CANCELED}),
    J.QUEUED: frozenset({J.SUBMITTED, J.FAILED, J.CANCELED, J.EXPIRED}),
    J.SUBMITTED: frozenset({J.RUNNING, J.DELIVERING, J.FAILED, J.BLOCKED, J.CANCELED, J.EXPIRED}),
    J.RUNNING: frozenset({J.RUNNING, J.DELIVERING, J.FAILED, J.BLOCKED, J.CANCELED, J.EXPIRED}),
    J.DELIVERING: frozenset({J.DELIVERING, J.DONE, J.FAILED}),
}


class TransitionError(Exception):
    """A job is not in a state that allows the change (someone else got there first)."""

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        self.current = current
        super().__init__(f"job {job_id} is {current}; cannot become {wanted}")


# How a stored step names a job's stored source N (resolved to a URL when it is sent).
SOURCE_REF = "source://"


@dataclass(frozen=True)
class SourceImage:
    """An edit source or mask as stored: re-encoded bytes and their size."""

    role: str  # image | mask
    mime: str
    width: int
    height: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class JobRecord:
    id: str
    guild_id: int
    channel_id: int
    member_id: int
    model: str
    operation: str
    options: dict[str, Any]
    step: dict[str, Any]
    estimate: int
    whatif: int | None
    status: JobStatus
    workflow_id: str | None
    workflow_status: str | None
    queue_position: int | None
    charged: int | None
    result_images: list[dict[str, Any]]
    delivered_message_ids: list[int]
    status_message_id: int | None
    upload_limit: int | None
    interaction_token: str | None = field(repr=False)
    interaction_expires_at: datetime | None
    parent_job_id: str | None
    error: str | None
    simulated: bool
    cancel_requested_by: int | None
    deadline_at: datetime | None
    created_at: datetime
    updated_at: datetime
    submit_attempted_at: datetime | None
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    delivered_at: datetime | None
    deliver_by: datetime | None = None
    missing_images: int = 0
    hold_amount: int | None = None
    # What the upstream service reported using (the OpenAI lane's tokens), when it says.
    usage: dict[str, Any] | None = None
    # A text step's result (a prompt enhancement's); None for jobs that make images.
    output: dict[str, Any] | None = None
    # The message the result answers (an upscale replies to the image it was made from).
    reply_to_message_id: int | None = None
    # The highest content level (pg … xxx) the job's channel allowed when it was admitted;
    # None for jobs from before channel levels (nothing is checked for them).
    max_rating: str | None = None
    # The DM channel the result went to instead of the job's channel, and why (migration 020).
    dm_channel_id: int | None = None
    dm_reason: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def prompt(self) -> str:
        return str(self.options.get("prompt", ""))


@dataclass(frozen=True)
class NewJob:
    id: str
    guild_id: int
    channel_id: int
    member_id: int
    model: str
    operation: str
    options: dict[str, Any]
    step: dict[str, Any]
    estimate: int
    status: JobStatus
    whatif: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    interaction_expires_at: datetime | None = None
    parent_job_id: str | None = None
    simulated: bool = False
    deadline_at: datetime | None = None
    status_message_id: int | None = None
    upload_limit: int | None = None
    reply_to_message_id: int | None = None
    max_rating: str | None = None


_JSON = {"options", "step", "result_images", "delivered_message_ids", "usage", "output"}
_TIMES = {
    "interaction_expires_at",
    "deadline_at",
    "created_at",
    "updated_at",
    "submitted_at",
    "submit_attempted_at",
    "started_at",
    "finished_at",
    "delivered_at",
    "deliver_by",
}


def _record(row: Row) -> JobRecord:
    values: dict[str, Any] = {}
    for name in JobRecord.__dataclass_fields__:
        if name not in row.keys():  # noqa: SIM118 - sqlite3.Row has no __contains__ for keys
            continue
        value = row[name]
        if name in _JSON:
            value = json.loads(value) if value is not None else None
        elif name in _TIMES and value is not None:
            value = datetime.fromisoformat(value)
        values[name] = value
    values["status"] = JobStatus(values["status"])
    values["simulated"] = bool(values["simulated"])
    return JobRecord(**values)


_SELECT = (
    "SELECT jobs.*, holds.amount AS hold_amount FROM jobs LEFT JOIN holds ON holds.job_id = jobs.id"
)
# ACTIVE written out as the partial indexes jobs_active and jobs_guild_active (migrations 001,
# 016) state it: SQLite uses a partial index only for a query that repeats its WHERE term,
# which bound parameters do not, and the jobs table is never pruned (every admission and the
# reconciler's pass read all of it, or all of a guild's history, without it).
_ACTIVE_ORDER = (J.QUEUED, J.SUBMITTED, J.RUNNING, J.DELIVERING)
assert frozenset(_ACTIVE_ORDER) == ACTIVE
ACTIVE_TERM = f"jobs.status IN ({', '.join(repr(s.value) for s in _ACTIVE_ORDER)})"
ACTIVE_JOBS = f"{_SELECT} WHERE {ACTIVE_TERM} ORDER BY jobs.created_at"
IN_FLIGHT_COUNTS = (
    "SELECT COALESCE(SUM(member_id = ?), 0), COUNT(*) FROM jobs"
    f" WHERE guild_id = ? AND {ACTIVE_TERM} AND status IN ({','.join('?' * len(IN_FLIGHT))})"
)


class JobStore:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def insert_in(self, tx: Conn, job: NewJob, sources: Iterable[SourceImage] = ()) -> None:
        now = iso(self.clock())
        tx.execute(
            "INSERT INTO jobs (id, guild_id, channel_id, member_id, model, operation, options,"
            " step, estimate, whatif, status, interaction_token, interaction_expires_at,"
            " parent_job_id, simulated, deadline_at, status_message_id, upload_limit,"
            " reply_to_message_id, max_rating, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.guild_id,
                job.channel_id,
                job.member_id,
                job.model,
                job.operation,
                json.dumps(job.options),
                json.dumps(job.step),
                job.estimate,
                job.whatif,
                job.status.value,
                job.interaction_token,
                iso(job.interaction_expires_at) if job.interaction_expires_at else None,
                job.parent_job_id,
                int(job.simulated),
                iso(job.deadline_at) if job.deadline_at else None,
                job.status_message_id,
                job.upload_limit,
                job.reply_to_message_id,
                job.max_rating,
                now,
                now,
            ),
        )
        for idx, source in enumerate(sources):
            tx.execute(
                "INSERT INTO job_sources (job_id, idx, role, mime, width, height, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, idx, source.role, source.mime, source.width, source.height, source.data),
            )
        self._event(tx, job.id, job.status.value, None, now)

    def _event(self, tx: Conn, job_id: str, status: str, detail: str | None, now: str) -> None:
        tx.execute(
            "INSERT INTO job_events (job_id, status, detail, created_at) VALUES (?, ?, ?, ?)",
            (job_id, status, detail, now),
        )

    def job_in(self, conn: Conn, job_id: str) -> JobRecord | None:
        found = fetch_row(conn, f"{_SELECT} WHERE jobs.id = ?", (job_id,))
        return _record(found) if found else None

    async def job(self, job_id: str) -> JobRecord | None:
        found = await self.db.fetchone(f"{_SELECT} WHERE jobs.id = ?", (job_id,))
        return _record(found) if found else None

    def transition_in(
        self,
        tx: Conn,
        job_id: str,
        status: JobStatus,
        *,
        detail: str | None = None,
        **changes: Any,
    ) -> JobRecord:
        """Move a job to `status` (checked against the allowed moves) and set other columns."""
        current = self.job_in(tx, job_id)
        if current is None:
            raise KeyError(job_id)
        if status not in ALLOWED.get(current.status, frozenset()):
            raise TransitionError(job_id, current.status.value, status.value)
        now = self.clock()
        changes["status"] = status.value
        changes["updated_at"] = iso(now)
        if status in FINAL and "finished_at" not in changes and current.finished_at is None:
            changes["finished_at"] = iso(now)
        self._set(tx, job_id, changes)
        if status != current.status or detail:
            self._event(tx, job_id, status.value, detail, iso(now))
        updated = self.job_in(tx, job_id)
        assert updated is not None
        return updated

    async def record_dm(self, job_id: str, dm_channel_id: int, reason: str) -> None:
        """The result went to the member by DM (`reason`: why not to its channel)."""
        await self.db.write(self.update_in, job_id, dm_channel_id=dm_channel_id, dm_reason=reason)

    def update_in(self, tx: Conn, job_id: str, **changes: Any) -> None:
        """Set columns without a status change (progress, message ids)."""
        changes["updated_at"] = iso(self.clock())
        self._set(tx, job_id, changes)

    def _set(self, tx: Conn, job_id: str, changes: dict[str, Any]) -> None:
        columns, values = [], []
        for name, value in changes.items():
            if name in _JSON:
                value = json.dumps(value)
            elif isinstance(value, datetime):
                value = iso(value)
            columns.append(f"{name} = ?")
            values.append(value)
        tx.execute(f"UPDATE jobs SET {', '.join(columns)} WHERE id = ?", (*values, job_id))

    async def children(self, job_id: str) -> list[str]:
        """The jobs made from this one (an image from its enhancement, an upscale...)."""
        found = await self.db.fetchall("SELECT id FROM jobs WHERE parent_job_id = ?", (job_id,))
        return [r[0] for r in found]

    async def sources(self, job_id: str) -> list[SourceImage]:
        found = await self.db.fetchall(
            "SELECT role, mime, width, height, data FROM job_sources WHERE job_id = ? ORDER BY idx",
            (job_id,),
        )
        return [SourceImage(r[0], r[1], r[2], r[3], bytes(r[4])) for r in found]

    async def active(self) -> list[JobRecord]:
        return [_record(r) for r in await self.db.fetchall(ACTIVE_JOBS)]

    def in_flight_in(self, tx: Conn, guild_id: int, member_id: int) -> tuple[int, int]:
        """(the member's, the guild's) jobs currently occupying the orchestrator."""
        row = fetch_row(tx, IN_FLIGHT_COUNTS, (member_id, guild_id, *(s.value for s in IN_FLIGHT)))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def child_in(self, tx: Conn, parent_job_id: str) -> str | None:
        """A job made from this one, if any (the first stored)."""
        found = fetch_row(
            tx,
            "SELECT id FROM jobs WHERE parent_job_id = ? ORDER BY rowid LIMIT 1",
            (parent_job_id,),
        )
        return None if found is None else str(found[0])

    def same_tool_active_in(
        self, tx: Conn, member_id: int, parent_job_id: str, model: str, image: object
    ) -> str | None:
        """The member's job, not ended, running tool `model` on image `image` of the parent."""
        marks = ",".join("?" * len(ACTIVE))
        found = fetch_row(
            tx,
            f"SELECT id FROM jobs WHERE member_id = ? AND parent_job_id = ? AND model = ?"
            f" AND json_extract(options, '$.image') = ? AND status IN ({marks}) LIMIT 1",
            (member_id, parent_job_id, model, image, *(s.value for s in ACTIVE)),
        )
        return None if found is None else str(found[0])

    async def recent(
        self,
        guild_id: int,
        member_id: int | None = None,
        *,
        limit: int = 10,
        active_only: bool = False,
    ) -> list[JobRecord]:
        clauses: list[str] = ["jobs.guild_id = ?"]
        params: list[Any] = [guild_id]
        if member_id is not None:
            clauses.append("jobs.member_id = ?")
            params.append(member_id)
        if active_only:
            clauses.append(ACTIVE_TERM)
        rows = await self.db.fetchall(
            f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY jobs.created_at DESC LIMIT ?",
            (*params, limit),
        )
        return [_record(r) for r in rows]

    async def all(self, *, active_only: bool = False, limit: int = 100) -> list[JobRecord]:
        where = ""
        params: list[Any] = []
        if active_only:
            where = f"WHERE {ACTIVE_TERM}"
        rows = await self.db.fetchall(
            f"{_SELECT} {where} ORDER BY jobs.created_at DESC LIMIT ?", (*params, limit)
        )
        return [_record(r) for r in rows]

    def untold_in(self, tx: Conn, job_id: str) -> None:
        """The job's ending, settled in `tx`, is still to be told (see told())."""
        tx.execute(
            "INSERT OR IGNORE INTO untold_endings (job_id, created_at) VALUES (?, ?)",
            (job_id, iso(self.clock())),
        )

    async def told(self, job_id: str) -> None:
        await self.db.write(self.told_in, job_id)

    def told_in(self, tx: Conn, job_id: str) -> None:
        tx.execute("DELETE FROM untold_endings WHERE job_id = ?", (job_id,))

    async def untold(self) -> list[JobRecord]:
        """Ended jobs whose ending was never told (the process died or stopped first)."""
        found = await self.db.fetchall(
            f"{_SELECT} JOIN untold_endings u ON u.job_id = jobs.id ORDER BY u.created_at"
        )
        return [_record(r) for r in found]

    async def events(self, job_id: str) -> list[tuple[str, str | None, datetime]]:
        rows = await self.db.fetchall(
            "SELECT status, detail, created_at FROM job_events WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [(r[0], r[1], datetime.fromisoformat(r[2])) for r in rows]
