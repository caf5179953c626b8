"""A finished job's results: fetched now (signed URLs expire), checked to be images, and
posted exactly once, patiently. Downloads and posts are retried until the job's delivery
deadline; a post that may have happened (a crash, a lost answer) is looked for before posting
again; what cannot be fetched by the deadline is told to the member, and put before the
moderators with its share of the charge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.engine.lane import UpstreamUnavailable
from bot.engine.parts import J, Parts
from bot.engine.publisher import PostFailed, ResultImage
from bot.engine.turns import Turns, turns_for
from bot.store.db import Conn
from bot.store.jobs import JobRecord, TransitionError

log = logging.getLogger(__name__)

DELIVERY_FAILED = "delivery failed"
DELIVERY_TURNS = 2
POSTING = "posting"


def missing_share(charged: int, missing: int, total: int) -> int:
    """The part of a charge that paid for the images that never arrived (rounded half up)."""
    if total <= 0 or missing <= 0:
        return 0
    return (2 * charged * missing + total) // (2 * total)


class Results:
    def __init__(self, parts: Parts, sleep: Callable[[str, float], Awaitable[None]]) -> None:
        self.parts = parts
        self._wait = sleep
        # The lane's last view at conclusion (a workflow), so delivery need not ask again.
        self._fresh: dict[str, Any] = {}
        # Deliveries holding images at once: when thousands of jobs end together, memory holds
        # a few results, not all of them, and a large one alone. One waiting to retry gives its
        # turns up meanwhile.
        self._turns = Turns(DELIVERY_TURNS)
        self._taken: dict[str, int] = {}
        # How each delivery ended, told once its turn is given back: the status edit and the
        # moderators' notice hold no images, and a rate-limited webhook or moderation channel
        # must not keep other jobs' results waiting.
        self._told: dict[str, tuple[JobRecord, str | None, int | None]] = {}

    async def _sleep(self, job_id: str, seconds: float) -> None:
        n = self._taken.get(job_id, 1)
        self._turns.release(n)
        try:
            await self._wait(job_id, seconds)
        finally:
            await self._turns.acquire(n)

    def remember(self, job_id: str, upstream: Any) -> None:
        self._fresh[job_id] = upstream

    def forget(self, job_id: str) -> None:
        self._fresh.pop(job_id, None)

    async def deliver(self, job: JobRecord) -> None:
        n = self._taken[job.id] = turns_for(job.result_images, DELIVERY_TURNS)
        try:
            async with self._turns.take(n):
                await self._deliver(job)
        finally:
            self._taken.pop(job.id, None)
            told = self._told.pop(job.id, None)
        if told is not None:
            ended, message, item_id = told
            await self.parts.status(ended, message)
            await self.parts.notify_review(item_id, ended)
            await self.parts.told(ended)

    async def _deliver(self, job: JobRecord) -> None:
        """Download and post the images, once, patiently: both are retried until the job's
        delivery deadline. A post may have happened if an earlier attempt reached the
        publisher (a crash, a lost answer): only then ask it first. What cannot be fetched by
        the deadline is told to the member and put before the moderators with its share."""
        events = await self.parts.jobs.events(job.id)
        if any(detail == POSTING for _, detail, _ in events):
            existing = await self.parts.publisher.find_delivery(job)
            if existing is not None:
                await self._delivered(job, existing)
                return
        deadline = job.deliver_by or self.parts.clock() + self.parts.settings.delivery_deadline
        try:
            images: list[ResultImage] = []
            total = 0
            if job.output is None:  # a text step's result (an enhancement) has nothing to fetch
                images, total = await self.parts.lane.fetch_results(
                    job,
                    self._fresh.pop(job.id, None),
                    deadline,
                    lambda seconds: self._sleep(job.id, seconds),
                    self.parts.alert,
                )
            if not images and job.output is None:
                await self._undeliverable(
                    job, f"none of the {total} image(s) could be fetched from the image service"
                )
                return
            job = await self.parts.db.write(
                self.parts.jobs.transition_in,
                job.id,
                J.DELIVERING,
                detail=POSTING,
                missing_images=total - len(images),
            )
            message_ids = await self._post(job, images, deadline)
        except (asyncio.CancelledError, UpstreamUnavailable, TransitionError):
            raise
        except Exception as exc:
            attempts = 1 + sum(1 for _, detail, _ in events if detail == DELIVERY_FAILED)
            if attempts < self.parts.settings.delivery_attempts or self.parts.clock() < deadline:
                await self.parts.db.write(
                    self.parts.jobs.transition_in, job.id, J.DELIVERING, detail=DELIVERY_FAILED
                )
                raise
            log.exception("job %s: giving up on delivery after %d attempts", job.id, attempts)
            await self._undeliverable(job, f"the images could not be posted ({exc})")
            return
        if message_ids is not None:
            await self._delivered(job, message_ids)

    async def _post(
        self, job: JobRecord, images: list[ResultImage], deadline: datetime
    ) -> list[int] | None:
        """Post until it works or the deadline passes (then the job is undeliverable: None)."""
        attempt = 0
        while True:
            try:
                return await self.parts.publisher.deliver(job, images)
            except PostFailed as exc:
                self.parts.metrics.delivery_failed()
                if not exc.retry or self.parts.clock() >= deadline:
                    # A passing fault may have come after the post was made (an answer lost):
                    # one look before telling the member it could not be posted.
                    existing = await self._look(job) if exc.retry else None
                    if existing is not None:
                        return existing
                    await self._undeliverable(job, f"the images could not be posted ({exc})")
                    return None
                delay = self.parts.backoff(attempt, deadline)
                log.warning("job %s: %s; posting again in %.0fs", job.id, exc, delay)
            await self._sleep(job.id, delay)
            attempt += 1
            # A failed post may have left part of a result behind: it is removed, or found
            # whole, before posting again.
            existing = await self.parts.publisher.find_delivery(job)
            if existing is not None:
                return existing

    async def _look(self, job: JobRecord) -> list[int] | None:
        try:
            return await self.parts.publisher.find_delivery(job)
        except PostFailed:
            return None

    async def _undeliverable(self, job: JobRecord, reason: str) -> None:
        what = "the images" if job.output is None else "the result"  # a text step's: no images
        message = f"{what} could not be posted; a moderator will look at the charge"

        def fail(tx: Conn) -> tuple[JobRecord, int]:
            failed = self.parts.jobs.transition_in(tx, job.id, J.FAILED, error=message)
            self.parts.jobs.untold_in(tx, job.id)  # told after the turn (deliver)
            return failed, self.parts.moderation.create_item_in(
                tx, job.guild_id, job.id, "undelivered", reason[:500]
            )

        job, item_id = await self.parts.db.write(fail)
        self.parts.metrics.undelivered()  # after the commit: once per job, never on a retry
        self._told[job.id] = (job, message, item_id)

    async def _delivered(self, job: JobRecord, message_ids: list[int]) -> None:
        missing, total = job.missing_images, len(job.result_images)
        message = None
        if missing:
            message = (
                f"{missing} of {total} images could not be fetched; the others are posted, "
                "and a moderator will look at the charge"
            )

        def finish(tx: Conn) -> tuple[JobRecord, int | None]:
            done = self.parts.jobs.transition_in(
                tx,
                job.id,
                J.DONE,
                delivered_message_ids=message_ids,
                delivered_at=self.parts.clock(),
                error=message,
            )
            self.parts.jobs.untold_in(tx, job.id)  # told after the turn (deliver)
            if not missing:
                return done, None
            share = missing_share(done.charged or 0, missing, total)
            reason = f"{missing} of {total} images could not be fetched"
            return done, self.parts.moderation.create_item_in(
                tx, job.guild_id, job.id, "undelivered", reason, refund_amount=share or None
            )

        job, item_id = await self.parts.db.write(finish)
        if item_id is not None:  # some images missing: in the review queue like a lost job
            self.parts.metrics.undelivered()
        self._told[job.id] = (job, message, item_id)
