"""The status message's Cancel button: the requester or a moderator stops the job; others cannot."""

from __future__ import annotations

import asyncio
import time

from bot.civitai.simulator import Outcome
from tests.discord.harness import (
    World,
    answer,
    buttons,
    field_value,
    finished,
    started,
    world,
)


async def running(w: World):
    """A gpt-image-2 job (286 Buzz) that never finishes on its own, already generating."""
    w.sim.script(Outcome("never"))
    h = await w.fake.slash(
        w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "forever"}
    )
    job = await started(w, h)
    job = await w.wait_job(job.id, "running")
    async with asyncio.timeout(10):
        while (job := await w.services.jobs.job(job.id)).workflow_status != "processing":
            await asyncio.sleep(0.02)
    return job


async def click_cancel(w: World, job, user: int):
    status = w.status_message(job)
    click = await w.fake.click(job.status_message_id, buttons(status)["Cancel"], user)
    reply = await answer(click)
    assert click.ephemeral
    return reply["content"]


async def ends_canceled(w: World, job) -> None:
    job = await w.wait_job(job.id, "canceled")
    wf = w.sim.workflow_for(job.id)
    assert wf is not None
    upstream = wf.net_charge(time.monotonic())
    # Canceled while generating: the orchestrator kept the charge; so does the ledger.
    assert job.charged == upstream == 286
    assert await w.available() == 1000 - 286
    status = await w.wait_status(job, "Canceled")
    assert "286 Buzz charged" in field_value(status, "Status")
    assert "Cancel" not in buttons(status)


async def test_the_requester_cancels(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await running(w)
        text = await click_cancel(w, job, w.member)
        # The answer waits for the ending: it says what really happened.
        assert f"Canceled job `{job.id}`; 286 Buzz charged" in text, text
        await ends_canceled(w, job)
        assert w.results() == []


async def test_another_member_cannot_cancel(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await running(w)
        text = await click_cancel(w, job, w.other)
        assert "only the member who asked" in text.lower()
        await w.fake.settle()
        job = await w.services.jobs.job(job.id)
        assert job.status.value == "running" and job.cancel_requested_by is None
        wf = w.sim.workflow_for(job.id)
        assert wf is not None and wf.canceled_at is None
        assert "Cancel" in buttons(w.status_message(job))


async def test_a_moderator_cancels(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await running(w)
        assert "Canceled job" in await click_cancel(w, job, w.moderator)
        await ends_canceled(w, job)


async def test_a_cancel_that_loses_to_the_end_says_so(tmp_path):
    """The workflow succeeds upstream just before the click reaches it: the images are posted
    and charged, and the member is told that, not 'Canceling'."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await running(w)
        wf = w.sim.workflow_for(job.id)
        assert wf is not None
        # Done upstream now; the bot learns it at its next read (the cancel is too late).
        wf.outcome, wf.t_done = Outcome("succeed"), time.monotonic()
        text = await click_cancel(w, job, w.member)
        assert "Canceling" not in text
        assert "already finished" in text and "286 Buzz charged" in text, text
        job, _result = await finished(w, job)
        assert job.charged == 286 and await w.available() == 1000 - 286
