"""Partial images on a job's status message, as they form (lanes that stream them).

Previews are best-effort, and bounded across all jobs:
- one preview edit at a time for the whole bot, at most one every `gap` seconds, and per job at
  most one every `interval` seconds: twenty jobs streaming do not send twenty uploads a second
  (they share Discord's rate limits with the status edits and results that matter more);
- newest wins: a job has at most one preview waiting, a newer one replaces it;
- the previews waiting hold at most `budget` bytes in all (a partial can be tens of MB): one
  that does not fit is dropped.
Once the job has moved on (its images are being posted, or it ended), no preview is shown any
more, even one that comes late, and the next status edit takes the last one off the message.
A preview is recorded in the database before it is uploaded, until an edit takes it off (or
Discord refuses that for good): one a stopped process left is taken off at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from bot.store.db import StoreBusy
from bot.store.jobs import JobRecord
from bot.store.previews import ShownPreviews

log = logging.getLogger(__name__)

Show = Callable[[JobRecord, bytes, str], Awaitable[None]]
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
# Bytes of all previews waiting to be shown, at most.
PREVIEW_BUDGET = 48 * 1024 * 1024
# Ended jobs remembered as closed (a late preview of one is dropped); the oldest are let go.
REMEMBER_CLOSED = 10_000
NEVER = float("-inf")


def preview_name(job_id: str, mime: str) -> str:
    return f"preview-{job_id}.{EXTENSIONS.get(mime, 'png')}"


class Previews:
    def __init__(
        self,
        show: Show,
        *,
        interval: float = 1.0,
        gap: float = 0.25,
        budget: int = PREVIEW_BUDGET,
        store: ShownPreviews | None = None,
    ) -> None:
        self._show = show
        self._store = store
        # The preview each job has in the database (written once per name, not per preview).
        self._recorded: dict[str, str] = {}
        self.interval = interval
        self.gap = gap
        self.budget = budget
        # The preview waiting per job, oldest offer first (the order they are shown in).
        self._waiting: dict[str, tuple[JobRecord, bytes, str]] = {}
        self._bytes = 0
        self._last: dict[str, float] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        # The preview file on each job's status message (for the status edits that follow).
        self._on_message: dict[str, str] = {}

    @property
    def waiting_bytes(self) -> int:
        return self._bytes

    def offer(self, job: JobRecord, image: bytes, mime: str) -> None:
        """Show `image` soon (the newest offered wins); returns at once."""
        if job.id in self._closed:
            return
        older = self._waiting.pop(job.id, None)
        if older is not None:
            self._bytes -= len(older[1])
        if self._bytes + len(image) > self.budget:
            log.debug("job %s: preview dropped (previews waiting are over budget)", job.id)
            if older is not None:  # the older one stays, at the back
                self._waiting[job.id] = older
                self._bytes += len(older[1])
            return
        self._waiting[job.id] = (job, image, mime)
        self._bytes += len(image)
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())

    def is_open(self, job_id: str) -> bool:
        return job_id not in self._closed

    def shown(self, job_id: str, name: str) -> None:
        self._on_message[job_id] = name

    def on_message(self, job_id: str) -> str | None:
        """The preview file the status message carries, if any."""
        return self._on_message.get(job_id)

    async def record(self, job_id: str, name: str) -> None:
        """Before it is uploaded: the preview `name` may be on the job's message from now on."""
        if self._store is None or self._recorded.get(job_id) == name:
            return
        try:
            await self._store.record(job_id, name)
        except StoreBusy as exc:  # shown all the same; only a restart's clean-up misses it
            log.warning("job %s: preview not recorded (%s)", job_id, exc)
            return
        self._recorded[job_id] = name

    async def taken_off(self, job_id: str) -> None:
        self._on_message.pop(job_id, None)
        if self._store is not None and self._recorded.pop(job_id, None) is not None:
            try:
                await self._store.taken_off(job_id)
            except StoreBusy as exc:  # the next start takes it off again: harmless
                log.warning("job %s: preview taken off, not recorded so (%s)", job_id, exc)

    async def given_up(self, job_id: str, why: object) -> None:
        """Discord refuses for good to edit the message (out of reach, an archived thread):
        the preview stays there, and nothing tries again (not at the next start either)."""
        if job_id in self._recorded or job_id in self._on_message:
            log.info("job %s: its preview cannot be taken off (%s); left as it is", job_id, why)
            await self.taken_off(job_id)

    async def load(self) -> dict[str, str]:
        """The previews a stopped process left (job id -> file name), known from now on as on
        their messages: the jobs' next status edits take them off."""
        if self._store is None:
            return {}
        left = await self._store.left()
        self._recorded.update(left)
        self._on_message.update(left)
        return left

    def close(self, job_id: str) -> None:
        """The job moved on: drop a waiting preview (one being shown finishes first, and
        looks again before it edits)."""
        self._closed[job_id] = None
        self._closed.move_to_end(job_id)
        while len(self._closed) > REMEMBER_CLOSED:
            self._closed.popitem(last=False)
        waiting = self._waiting.pop(job_id, None)
        if waiting is not None:
            self._bytes -= len(waiting[1])
        self._last.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        """The job ended: nothing of it is kept, but it stays closed (a preview offered or
        being shown after this must not put a "running" status with Cancel back)."""
        self.close(job_id)
        self._on_message.pop(job_id, None)
        self._recorded.pop(job_id, None)  # a row left (edits failed) is for the next start

    async def aclose(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        self._waiting.clear()
        self._bytes = 0

    async def _run(self) -> None:
        """Shows the waiting previews one at a time, each job's at its own pace."""
        loop = asyncio.get_running_loop()
        while self._waiting:
            self._wake.clear()
            now = loop.time()
            due = [j for j in self._waiting if self._last.get(j, NEVER) + self.interval <= now]
            if not due:
                soonest = min(self._last[j] for j in self._waiting) + self.interval - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, soonest))
                continue
            job, image, mime = self._waiting.pop(due[0])
            self._bytes -= len(image)
            self._last[job.id] = now
            try:
                await self._show(job, image, mime)
            except Exception:
                log.exception("job %s: preview not shown", job.id)
            del image
            if self.gap > 0:
                await asyncio.sleep(self.gap)
