"""An engine stopped mid-job and a new one on the same database: every job finishes once."""

from __future__ import annotations

import asyncio

from bot.civitai.simulator import Simulator
from bot.engine.publisher import ResultImage
from bot.store.jobs import JobRecord, JobStatus, NewJob
from tests.engine.harness import CHANNEL, GUILD, MEMBER, MemoryPublisher, harness


async def test_a_restarted_engine_resumes_running_jobs(tmp_path):
    sim = Simulator(speed=0.02, seed=3)
    await sim.start()
    publisher = MemoryPublisher()
    try:
        async with harness(tmp_path, sim=sim, publisher=publisher) as first:
            await first.grant(5000)
            jobs = [
                await first.engine.submit(first.request(f"p{i}", quality="low")) for i in range(5)
            ]
            await asyncio.sleep(0.2)  # submitted, not finished (runtimes ≥ 0.3 s here)
            for j in jobs:
                assert not (await first.job(j.id)).final
        # The first engine is gone; a new one on the same database picks the jobs up.
        async with harness(tmp_path, sim=sim, publisher=publisher) as second:
            assert await second.engine.start() == 5
            await second.settle_all()
            for job in jobs:
                assert (await second.job(job.id)).status is JobStatus.DONE
            assert sorted(p[0] for p in publisher.posts) == sorted(j.id for j in jobs)
            assert len(sim.submissions) == 5, "resubmission found the same workflows"
            assert await second.available() == 5000 - 5 * 13 == 5000 - sim.charged_total()
    finally:
        await sim.stop()


class PostsThenHangs(MemoryPublisher):
    """Posts the result, then never returns: a crash between posting and recording it."""

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        await super().deliver(job, images)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_result_posted_before_a_crash_is_not_posted_again(tmp_path):
    sim = Simulator(speed=0.005, seed=4)
    await sim.start()
    hanging = PostsThenHangs()
    try:
        async with harness(tmp_path, sim=sim, publisher=hanging) as first:
            await first.grant(500)
            job = await first.engine.submit(first.request(quality="low"))
            async with asyncio.timeout(10):
                while not hanging.posts:
                    await asyncio.sleep(0.01)
            assert (await first.job(job.id)).status is JobStatus.DELIVERING
        # New process, same Discord: the publisher can tell the result is already there.
        survivor = MemoryPublisher(deliveries=dict(hanging.deliveries))
        async with harness(tmp_path, sim=sim, publisher=survivor) as second:
            await second.engine.start()
            await second.settle_all()
            done = await second.job(job.id)
            assert done.status is JobStatus.DONE
            assert done.delivered_message_ids == hanging.deliveries[job.id]
            assert survivor.posts == [], "not posted a second time"
    finally:
        await sim.stop()


async def test_a_job_admitted_without_a_task_is_adopted_by_the_running_engine(tmp_path):
    """A caller cancelled after its admission committed leaves a queued job and its hold with
    no task: the engine's periodic reconcile picks it up instead of leaving the Buzz held."""
    from dataclasses import replace

    from bot.catalog import Model, Operation, RequestOptions

    async with harness(tmp_path) as h:
        h.engine.parts.settings = replace(h.engine.settings, reconcile_every=0.05)
        await h.grant(500)
        await h.engine.start()
        validated = h.engine.validate(h.request(quality="low"))
        orphan = NewJob(
            id="jorphan1",
            guild_id=GUILD,
            channel_id=CHANNEL,
            member_id=MEMBER,
            model=Model.GPT_IMAGE_2.value,
            operation=Operation.CREATE.value,
            options=RequestOptions(prompt="orphan").as_dict(),
            step=validated.step(),
            estimate=13,
            status=JobStatus.QUEUED,
        )

        def admit(tx):
            h.jobs.insert_in(tx, orphan)
            h.ledger.place_hold_in(tx, GUILD, MEMBER, orphan.id, 13)

        await h.db.write(admit)
        async with asyncio.timeout(10):
            while (await h.job(orphan.id)).status is not JobStatus.DONE:
                await asyncio.sleep(0.02)
        assert await h.available() == 500 - 13
