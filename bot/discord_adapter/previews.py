"""Partial images on a job's status message, as they form (lanes that stream them).

Each preview replaces the last one in place; edits are paced (at most one a `interval` seconds
per job: a preview that comes sooner waits, and a newer one replaces it while it waits). Once
the job has moved on (its images are being posted, or it ended), no preview is shown any more
and the next status edit takes the last one off the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.store.jobs import JobRecord

log = logging.getLogger(__name__)

Show = Callable[[JobRecord, bytes, str], Awaitable[None]]
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def preview_name(job_id: str, mime: str) -> str:
    return f"preview-{job_id}.{EXTENSIONS.get(mime, 'png')}"


class Previews:
    def __init__(self, show: Show, *, interval: float = 1.0) -> None:
        self._show = show
        self.interval = interval
        self._latest: dict[str, tuple[JobRecord, bytes, str]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, float] = {}
        self._showing: set[str] = set()
        self._closed: set[str] = set()
        # The preview file on each job's status message (for the status edits that follow).
        self._on_message: dict[str, str] = {}

    def offer(self, job: JobRecord, image: bytes, mime: str) -> None:
        """Show `image` soon (the newest offered wins); returns at once."""
        if job.id in self._closed:
            return
        self._latest[job.id] = (job, image, mime)
        if job.id not in self._tasks:
            self._tasks[job.id] = asyncio.create_task(self._pace(job.id))

    def is_open(self, job_id: str) -> bool:
        return job_id not in self._closed

    def shown(self, job_id: str, name: str) -> None:
        self._on_message[job_id] = name

    def on_message(self, job_id: str) -> str | None:
        """The preview file the status message carries, if any."""
        return self._on_message.get(job_id)

    def taken_off(self, job_id: str) -> None:
        self._on_message.pop(job_id, None)

    def close(self, job_id: str) -> None:
        """The job moved on: drop a waiting preview (one being shown finishes first)."""
        self._closed.add(job_id)
        self._latest.pop(job_id, None)
        self._last.pop(job_id, None)
        task = self._tasks.get(job_id)
        if task is not None and job_id not in self._showing:
            task.cancel()

    def forget(self, job_id: str) -> None:
        """The job ended: nothing of it is kept."""
        self.close(job_id)
        self._closed.discard(job_id)
        self._on_message.pop(job_id, None)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pace(self, job_id: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while job_id in self._latest:
                wait = self._last.get(job_id, float("-inf")) + self.interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                item = self._latest.pop(job_id, None)
                if item is None or job_id in self._closed:
                    return
                self._last[job_id] = loop.time()
                self._showing.add(job_id)
                try:
                    await self._show(*item)
                except Exception:
                    log.exception("job %s: preview not shown", job_id)
                finally:
                    self._showing.discard(job_id)
        finally:
            self._tasks.pop(job_id, None)
