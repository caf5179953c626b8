"""One bounded pool for CPU-heavy image work: decoding and re-encoding edit sources, fitting
results to the upload limit.

Built once with the services and shared by everything that touches pixels, so a burst of big
images queues here (first come, first served) instead of running all at once: memory stays at
a few decoded images, and the event loop (and with it every /create's first answer) never waits
on someone else's image. Pillow releases the GIL in its codecs, so threads are enough; one core
is left to the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def default_workers() -> int:
    """One fewer than the cores this process may use (at least one)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class ImagePool:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="image-work")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on one of the pool's threads, in turn with all other image
        work. Cancelling the caller does not stop a call that has started (Pillow cannot be
        interrupted); one still queued is dropped."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
