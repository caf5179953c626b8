"""The OpenAI lane's jobs after the operator switched the bot to the orchestrator (BOT_PROVIDER,
at a restart). A finished one's images are in the database (in-band, stored with its
settlement): they are posted from there. One whose call was not made, or was cut short by the
stop, cannot be called any more: it ends, nothing charged (this lane charges on success only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.engine.lane import Ending, Run
from bot.engine.publisher import ResultImage
from bot.openai_api.job_step import STEP_TYPE
from bot.store import results
from bot.store.db import Database
from bot.store.jobs import JobRecord, JobStatus

ANOTHER_SERVICE = "this request was made for another image service; nothing was charged"


def made_for_openai(job: JobRecord) -> bool:
    return job.step.get("$type") == STEP_TYPE


async def stored_images(db: Database, job: JobRecord) -> tuple[list[ResultImage], int]:
    """A finished job's images as the lane stored them: (those there, how many it made)."""
    stored = await results.load(db, job.id)
    images = [
        ResultImage(r.index, f"{job.id}-{r.index + 1}", r.mime, r.width, r.height, r.data)
        for r in stored
    ]
    return images, max(len(job.result_images), len(images))


class StoredResults:
    """fetch_results of a lane whose results arrive in-band and are stored with the
    settlement: nothing to fetch, they are read back from the database."""

    db: Database

    async def fetch_results(
        self,
        job: JobRecord,
        upstream: Any,
        deadline: datetime,
        sleep: Callable[[float], Awaitable[None]],
        alert: Callable[[str, str], Awaitable[None]],
    ) -> tuple[list[ResultImage], int]:
        return await stored_images(self.db, job)


class SwitchedAway(StoredResults):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def run(self, run: Run) -> Ending:
        return Ending(JobStatus.FAILED, message=ANOTHER_SERVICE, detail="BOT_PROVIDER switched")

    async def cancel(self, job: JobRecord) -> None:
        return None  # no call is under way: run ends it
