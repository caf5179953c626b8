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

from bot.civitai.errors import BlobExpired, BlobRefused, NotFound, Unavailable
from bot.civitai.models import Workflow
from bot.engine.parts import J, Parts
from bot.engine.publisher import PostFailed, ResultImage
from bot.media.decode import probe_image
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
        # Workflows seen at conclusion, so delivery needs no extra request for fresh URLs.
        self._fresh: dict[str, Workflow] = {}
        # Deliveries holding images at once: when thousands of jobs end together, memory holds
        # a few results, not all of them. One waiting to retry gives its turn up meanwhile.
        self._turns = asyncio.Semaphore(DELIVERY_TURNS)

    async def _sleep(self, job_id: str, seconds: float) -> None:
        self._turns.release()
        try:
            await self._wait(job_id, seconds)
        finally:
            await self._turns.acquire()

    def remember(self, job_id: str, workflow: Workflow) -> None:
        self._fresh[job_id] = workflow

    def forget(self, job_id: str) -> None:
        self._fresh.pop(job_id, None)

    async def deliver(self, job: JobRecord) -> None:
        async with self._turns:
            await self._deliver(job)

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
            images, total = await self._fetch_results(job, deadline)
            if not images:
                await self._undeliverable(
                    job, f"none of the {total} image(s) could be fetched from the orchestrator"
                )
                return
            job = await self.parts.db.write(
                self.parts.jobs.transition,
                job.id,
                J.DELIVERING,
                detail=POSTING,
                missing_images=total - len(images),
            )
            message_ids = await self._post(job, images, deadline)
        except (asyncio.CancelledError, Unavailable, TransitionError):
            raise
        except Exception as exc:
            attempts = 1 + sum(1 for _, detail, _ in events if detail == DELIVERY_FAILED)
            if attempts < self.parts.settings.delivery_attempts or self.parts.clock() < deadline:
                await self.parts.db.write(
                    self.parts.jobs.transition, job.id, J.DELIVERING, detail=DELIVERY_FAILED
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

    async def _undeliverable(self, job: JobRecord, reason: str) -> None:
        message = "the images could not be posted; a moderator will look at the charge"

        def fail(tx: Conn) -> tuple[JobRecord, int]:
            failed = self.parts.jobs.transition(tx, job.id, J.FAILED, error=message)
            return failed, self.parts.moderation.create_item(
                tx, job.guild_id, job.id, "undelivered", reason[:500]
            )

        job, item_id = await self.parts.db.write(fail)
        await self.parts.status(job, message)
        await self.parts.notify_review(item_id, job)

    async def _delivered(self, job: JobRecord, message_ids: list[int]) -> None:
        missing, total = job.missing_images, len(job.result_images)
        message = None
        if missing:
            message = (
                f"{missing} of {total} images could not be fetched; the others are posted, "
                "and a moderator will look at the charge"
            )

        def finish(tx: Conn) -> tuple[JobRecord, int | None]:
            done = self.parts.jobs.transition(
                tx,
                job.id,
                J.DONE,
                delivered_message_ids=message_ids,
                delivered_at=self.parts.clock(),
                error=message,
            )
            if not missing:
                return done, None
            share = missing_share(done.charged or 0, missing, total)
            reason = f"{missing} of {total} images could not be fetched"
            return done, self.parts.moderation.create_item(
                tx, job.guild_id, job.id, "undelivered", reason, refund_amount=share or None
            )

        job, item_id = await self.parts.db.write(finish)
        await self.parts.status(job, message)
        if item_id is not None:
            await self.parts.notify_review(item_id, job)

    async def _fetch_results(
        self, job: JobRecord, deadline: datetime
    ) -> tuple[list[ResultImage], int]:
        """Every image of the workflow, fetched now (signed URLs expire) and checked to be an
        image: (the images in order, how many there are). Failures are retried — an expired
        URL after asking the orchestrator for fresh ones — until `deadline`."""
        assert job.workflow_id is not None
        workflow = self._fresh.pop(job.id, None)
        fetched: dict[int, ResultImage] = {}
        total = len(job.result_images)
        attempt = 0
        while True:
            if workflow is None:
                try:
                    workflow = await self.parts.client.get(job.workflow_id)
                except Unavailable as exc:
                    log.warning("job %s: cannot get fresh image URLs: %s", job.id, exc)
                except NotFound:
                    log.warning("job %s: the orchestrator no longer has its workflow", job.id)
                    break
            if workflow is not None:
                blobs = workflow.images()
                total = len(blobs)
                stale = False
                for index, blob in enumerate(blobs):
                    if index in fetched:
                        continue
                    image = await self._fetch_one(job, index, blob.id, blob.url)
                    if image is None:
                        stale = stale or not blob.url
                    elif isinstance(image, ResultImage):
                        fetched[index] = image
                    else:
                        stale = True
                if len(fetched) == total:
                    break
                if stale:
                    workflow = None  # ask for fresh URLs next time round
            self.parts.metrics.delivery_failed()  # this round left images unfetched
            if self.parts.clock() >= deadline:
                break
            delay = self.parts.backoff(attempt, deadline)
            log.warning(
                "job %s: %d of %d image(s) not fetched yet; trying again in %.0fs",
                job.id,
                total - len(fetched),
                total,
                delay,
            )
            await self._sleep(job.id, delay)
            attempt += 1
        return [fetched[i] for i in sorted(fetched)], total

    async def _fetch_one(
        self, job: JobRecord, index: int, blob_id: str, url: str | None
    ) -> ResultImage | bool | None:
        """One image; None when it failed for now, False when its URL needs refreshing."""
        if not url:
            return None
        try:
            data = await self.parts.client.download_blob(url)
        except BlobExpired:
            return False
        except (Unavailable, BlobRefused) as exc:
            log.warning("job %s: image %d not fetched: %s", job.id, index + 1, exc)
            return None
        try:
            mime, width, height = await asyncio.to_thread(probe_image, data)
        except ValueError as exc:
            # A 200 whose body is not an image (an error page, a cut-off file): retried.
            log.warning("job %s: image %d is not a readable image (%s)", job.id, index + 1, exc)
            return None
        return ResultImage(index, blob_id, mime, width, height, data)
