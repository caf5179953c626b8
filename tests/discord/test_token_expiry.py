"""A job that outlives its command's 15-minute interaction token (held for review, a slow
queue) still reaches the member: Discord refuses the expired token (401, 50027) even where the
bot's clock says it lives, and the status edits and the result go through the channel."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bot.civitai.simulator import Outcome
from tests.discord.harness import World, field_value, text_of, world
from tests.discord.test_discord_faults import traced
from tests.discord_admin.helpers import COST, item_message, mod_channel, press, request, started_job
from tests.fakes import rest as fake_rest
from tests.fakes.errors import ApiError
from tests.fakes.interactions import InteractionHandle

EXPIRED_CODE = 50027


def age_out(handle: InteractionHandle) -> None:
    """Discord's clock has moved past the token's 15 minutes (the bot's has not)."""
    handle.record.created_at -= timedelta(minutes=16)


def refused_tokens(w: World, handle: InteractionHandle) -> int:
    return len([c for c in w.calls_with_code(EXPIRED_CODE) if handle.token in c.path])


def reached_the_member(w: World, job_id: str, result: dict) -> None:
    assert result["attachments"] and f"<@{w.member}>" in result["content"]
    assert len(w.results_of(job_id)) == 1 and w.fake.dm_messages(w.member) == []


async def test_a_job_approved_after_its_token_expired_reaches_the_member(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "volcano", w.moderator)
        handle = await request(w, "a volcano at dusk")
        job = await started_job(w, handle)
        job = await w.wait_job(job.id, "held")
        await w.wait_status(job, "review")
        item = await item_message(w, job)

        age_out(handle)  # the moderator took 16 minutes
        reply = await press(w, item, "Approve", w.moderator)
        assert reply.endswith("approved: the job runs now.")
        result = await w.wait_result(job.id, timeout=30)
        job = await w.wait_job(job.id, "done")
        reached_the_member(w, job.id, result)
        status = await w.wait_status(job, "Done")
        assert "Cancel" not in text_of(status)
        assert job.charged == COST and await w.available() == 1000 - COST
        assert refused_tokens(w, handle) >= 1  # the bot did try the token, and got past it
    assert traced(caplog) == []


async def test_a_job_that_runs_past_its_token_reaches_the_member(tmp_path, caplog):
    """A slow queue: the workflow ends after the token did."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("never"))
        handle = await request(w, "a slow lighthouse")
        job = await started_job(w, handle)
        await w.wait_job(job.id, "running")
        age_out(handle)
        wf = w.sim.workflow_for(job.id)
        assert wf is not None
        wf.outcome, wf.t_done = Outcome("succeed"), time.monotonic()
        wf.notify()
        result = await w.wait_result(job.id, timeout=30)
        job = await w.wait_job(job.id, "done")
        reached_the_member(w, job.id, result)
        status = await w.wait_status(job, "Done")
        assert "Done" in field_value(status, "Status")
        assert job.charged == COST and await w.available() == 1000 - COST
    assert traced(caplog) == []


@pytest.fixture
def archived(monkeypatch):
    """archived.add(thread_id): edits of messages there are refused as Discord refuses them
    in an archived thread (400, 50083); a new message would unarchive it."""
    threads: set[int] = set()
    original = fake_rest.RestApi.edit_message

    async def edit_message(self, request):
        if int(request.match_info["channel_id"]) in threads:
            await request.read()
            raise ApiError(400, 50083, "Thread is archived")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_message", edit_message)
    return threads


async def test_a_rejection_in_a_thread_archived_meanwhile_is_told_privately(
    tmp_path, caplog, archived
):
    """The review took hours: the thread archived itself and its status message can no longer
    be edited. The member hears the verdict privately instead of reading 'waiting for a
    moderator's review' for good."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "volcano", w.moderator)
        thread = w.fake.add_thread(w.channel, "ideas", w.member)
        handle = await request(w, "a volcano at dusk", channel=thread)
        job = await started_job(w, handle)
        job = await w.wait_job(job.id, "held")
        item = await item_message(w, job)

        age_out(handle)
        archived.add(thread)
        reply = await press(w, item, "Reject", w.moderator)
        assert reply.endswith("rejected: the held Buzz was released.")
        await w.wait_job(job.id, "rejected")
        [notice] = await w.fake.wait_for(
            lambda: [m for m in w.fake.dm_messages(w.member) if "will not run" in text_of(m)],
            what="the member told of the rejection",
        )
        assert "nothing was charged" in text_of(notice)
        assert await w.available() == 1000
    assert traced(caplog) == []
