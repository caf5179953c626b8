"""When many jobs end together, only a few deliveries hold downloaded images at once, and a
large result alone; every result is still posted, once."""

from __future__ import annotations

import asyncio

from bot.engine.publisher import ResultImage
from bot.engine.results import DELIVERY_TURNS
from bot.engine.turns import Turns, turns_for
from bot.store.jobs import JobRecord, JobStatus
from tests.engine.harness import MemoryPublisher, harness


class CountingPublisher(MemoryPublisher):
    """Holds each post open a while, counting how many are open at the same moment."""

    def __init__(self) -> None:
        super().__init__()
        self.open: set[str] = set()
        self.peak = 0
        self.overlaps: list[set[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.hold = 0.0  # seconds each post stays open (else a few loop turns)

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        await self.gate.wait()
        self.open.add(job.id)
        self.peak = max(self.peak, len(self.open))
        self.overlaps.append(set(self.open))
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
            for _ in range(20):
                await asyncio.sleep(0)
            return await super().deliver(job, images)
        finally:
            self.open.discard(job.id)


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


async def test_a_large_result_is_delivered_alone(tmp_path):
    publisher = CountingPublisher()
    publisher.gate.clear()  # deliveries wait until all six jobs have ended upstream
    publisher.hold = 0.2  # long enough for the next delivery's download to catch up
    async with harness(tmp_path, publisher=publisher) as h:
        await h.grant(100_000)
        small = [await h.engine.submit(h.request(f"a harbour, take {i}")) for i in range(4)]
        large = [
            await h.engine.submit(h.request(f"a harbour in 4K, take {i}", size="3840x2160"))
            for i in range(2)
        ]
        async with asyncio.timeout(20):
            while {(await h.job(job.id)).status for job in small + large} != {JobStatus.DELIVERING}:
                await asyncio.sleep(0.01)
        publisher.gate.set()
        await h.settle_all()
        for job in small + large:
            assert (await h.job(job.id)).status is JobStatus.DONE
        assert len(publisher.posts) == 6
        big = {job.id for job in large}
        assert publisher.peak == DELIVERY_TURNS  # small ones still go side by side
        for together in publisher.overlaps:
            assert not (together & big) or len(together) == 1, together


def test_turns_grow_with_the_result_pixels():
    one = [{"blob_id": "a", "width": 1024, "height": 1024}]
    assert turns_for(one, 2) == 1
    assert turns_for(one * 4, 2) == 1
    assert turns_for([{"blob_id": "a", "width": 3840, "height": 2160}], 2) == 2
    assert turns_for([{"blob_id": "a", "width": None, "height": None}], 2) == 1
    assert turns_for([], 2) == 1


async def test_turns_go_in_order_of_asking():
    turns = Turns(2)
    order: list[str] = []

    async def deliver(name: str, n: int) -> None:
        async with turns.take(n):
            order.append(name)
            await asyncio.sleep(0.01)

    await turns.acquire(1)  # one delivery under way
    waiting = [
        asyncio.create_task(deliver("large", 2)),
        asyncio.create_task(deliver("small", 1)),
    ]
    await asyncio.sleep(0.01)
    # A turn is free, but the large one asked first: the small one does not overtake it.
    assert order == []
    turns.release(1)
    await asyncio.gather(*waiting)
    assert order == ["large", "small"]
    assert turns.free == 2


async def test_a_delivery_cancelled_while_waiting_gives_its_place_up():
    turns = Turns(2)
    await turns.acquire(1)
    large = asyncio.create_task(turns.acquire(2))
    small = asyncio.create_task(turns.acquire(1))
    await asyncio.sleep(0)
    assert not small.done()  # behind the large one
    large.cancel()
    await asyncio.wait_for(small, 1)  # the small one fits now, and goes
    turns.release(1)
    turns.release(1)
    assert turns.free == 2


async def test_a_turn_given_back_just_as_a_waiter_is_cancelled_is_not_lost():
    """At a stop, deliveries waiting for a turn are cancelled while others give theirs back:
    the cancelled one's turn goes to no one, and the giver sees no InvalidStateError."""
    turns = Turns(1)
    await turns.acquire(1)
    waiter = asyncio.create_task(turns.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()  # its future is cancelled now; the task runs only later
    turns.release(1)
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled() and turns.free == 1
