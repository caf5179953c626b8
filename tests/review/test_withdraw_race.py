"""A member takes back a held job just as a moderator approves it: the approval wins the race,
so the job is cancelled as a running one, and the ledger ends equal to what the orchestrator
charged (it was never written off as "nothing ran")."""

from __future__ import annotations

import asyncio

from bot.civitai.simulator.scripting import Outcome
from bot.engine.requests import Requester
from bot.review import Action
from bot.store.jobs import JobStatus
from tests.review.helpers import CHANNEL, GUILD, MEMBER, MOD, moderation


async def test_a_withdrawal_that_loses_to_an_approval_cancels_the_running_job(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.held()
        m.h.sim.script(Outcome("succeed", runtime=200), prompt="castle")
        jobs = m.h.engine.parts.jobs
        read = jobs.job
        raced = False

        async def approved_in_between(job_id: str):
            """The cancel reads the job HELD; the approval commits (and the job is submitted)
            before the withdrawal's transaction runs."""
            nonlocal raced
            record = await read(job_id)
            if job_id == job.id and not raced:
                raced = True
                assert record is not None and record.status is JobStatus.HELD
                await m.review.act(GUILD, item.id, Action.APPROVE, MOD)
                async with asyncio.timeout(10):
                    while m.h.sim.workflow_for(job_id) is None:
                        await asyncio.sleep(0.005)
            return record

        jobs.job = approved_in_between  # type: ignore[method-assign]
        try:
            await m.h.engine.cancel(job.id, Requester(GUILD, CHANNEL, MEMBER))
        finally:
            jobs.job = read  # type: ignore[method-assign]
        await m.h.settle_all()
        final = await m.h.job(job.id)
        hold = await m.h.ledger.hold(job.id)
        upstream = m.h.sim.workflow_for(job.id)
        assert upstream is not None and upstream.canceled_at is not None  # stopped upstream
        assert final.status is JobStatus.CANCELED
        assert final.charged == hold.charged == m.h.sim.charged_total()
        assert await m.h.available() == 1000 - m.h.sim.charged_total()
        assert (await m.h.moderation.item(item.id)).status == "approved"
