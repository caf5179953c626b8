"""The engine's side of a lane running one job (LaneRun): what the lane reports is recorded
one transaction each, and shown on the member's status message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.engine.parts import J, Parts
from bot.store.db import Conn
from bot.store.jobs import JobRecord, TransitionError


class LaneRun:
    """The engine's side of a lane running one job: progress recorded one transaction each,
    the member's status message kept up to date, sleeps that a cancel wakes."""

    def __init__(
        self,
        parts: Parts,
        job: JobRecord,
        sleep: Callable[[str, float], Awaitable[None]],
    ) -> None:
        self.parts, self._job, self._sleep = parts, job, sleep

    @property
    def job(self) -> JobRecord:
        return self._job

    async def refresh(self) -> JobRecord:
        self._job = await self.parts.jobs.job(self._job.id) or self._job
        return self._job

    async def sleep(self, seconds: float) -> None:
        await self._sleep(self._job.id, seconds)

    def past_deadline(self) -> bool:
        return self.parts.past_deadline(self._job)

    def past_grace(self) -> bool:
        return self.parts.past_grace(self._job)

    async def mark_attempt(self) -> None:
        self._job = await self.parts.db.write(self._set_attempt, self.parts.clock())

    async def clear_attempt(self) -> None:
        self._job = await self.parts.db.write(self._set_attempt, None)

    def _set_attempt(self, tx: Conn, when: datetime | None) -> JobRecord:
        current = self.parts.jobs.job_in(tx, self._job.id)
        assert current is not None
        if current.final or current.status is J.HELD:
            # Ended (or held) by someone else since this task read it: nothing may be sent.
            raise TransitionError(current.id, current.status.value, J.SUBMITTED.value)
        self.parts.jobs.update_in(tx, self._job.id, submit_attempted_at=when)
        marked = self.parts.jobs.job_in(tx, self._job.id)
        assert marked is not None
        return marked

    async def submitted(self, upstream_id: str | None, upstream_status: str | None) -> None:
        parts = self.parts
        self._job = await parts.db.write(
            parts.jobs.transition_in,
            self._job.id,
            J.SUBMITTED,
            workflow_id=upstream_id,
            workflow_status=upstream_status,
            submitted_at=parts.clock(),
        )
        await parts.status(self._job, None)

    async def progress(
        self,
        upstream_status: str,
        queue_position: int | None = None,
        *,
        started: bool = False,
        fraction: float | None = None,
    ) -> None:
        parts = self.parts
        changes: dict[str, Any] = {
            "workflow_status": upstream_status,
            "queue_position": queue_position,
        }
        if started and self._job.started_at is None:
            changes["started_at"] = parts.clock()
        self._job = await parts.db.write(
            parts.jobs.transition_in, self._job.id, J.RUNNING, **changes
        )
        await parts.status(self._job, None, fraction)

    async def preview(self, image: bytes, mime: str) -> None:
        await self.parts.publisher.on_preview(self._job, image, mime)

    async def alert(self, key: str, message: str) -> None:
        await self.parts.alert(key, message)

    def recovered(self, key: str) -> None:
        self.parts.alerted.discard(key)
