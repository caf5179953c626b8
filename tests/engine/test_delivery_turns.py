"""When many jobs end together, only a few deliveries hold downloaded images at once; every
result is still posted, once."""

from __future__ import annotations

import asyncio

from bot.engine.publisher import ResultImage
from bot.engine.results import DELIVERY_TURNS
from bot.store.jobs import JobRecord, JobStatus
from tests.engine.harness import MemoryPublisher, harness


class CountingPublisher(MemoryPublisher):
    """Holds each post open a while, counting how many are open at the same moment."""

    active: int = 0
    peak: int = 0

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            for _ in range(20):
                await asyncio.sleep(0)
            return await super().deliver(job, images)
        finally:
            self.active -= 1


async def test_only_a_few_deliveries_hold_images_at_once(tmp_path):
    publisher = CountingPublisher()
    async with harness(tmp_path, publisher=publisher) as h:
        await h.grant(10_000)
        jobs = [await h.engine.submit(h.request(f"a harbour, take {i}")) for i in range(8)]
        await h.settle_all()
        for job in jobs:
            assert (await h.job(job.id)).status is JobStatus.DONE
        assert sorted(job_id for job_id, _ in publisher.posts) == sorted(j.id for j in jobs)
        assert 1 <= publisher.peak <= DELIVERY_TURNS
