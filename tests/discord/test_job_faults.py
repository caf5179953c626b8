"""Discord faults while jobs are in flight: a slow or refusing side channel (the log channel,
the status message) never costs a member their result or the news of how their job ended."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from bot.civitai.simulator import Outcome
from tests.discord import test_discord_faults
from tests.discord.harness import is_ephemeral, started, text_of, world
from tests.discord.test_discord_faults import PAST_THE_TOKEN, create, traced
from tests.discord_admin.helpers import delete_channel
from tests.fakes import rest as fake_rest
from tests.fakes.errors import ApiError, missing_permissions


async def test_a_stalled_log_channel_holds_up_no_status_and_no_delivery(tmp_path, caplog):
    """The log channel is rate limited (its posts wait): each finished job's status still
    says Done and every result is posted; the log lines follow when the channel answers."""
    async with world(tmp_path) as w:
        logs = w.fake.add_channel(w.guild, "image-log")
        await w.set_guild(log_channel_id=logs)
        await w.grant(1000)
        gate = w.fake.hold_requests("POST", rf"/channels/{logs}/messages$")
        try:
            jobs = [await started(w, await create(w, f"a lighthouse {n}")) for n in range(3)]
            for job in jobs:
                await w.wait_result(job.id)
                await w.wait_status(await w.wait_job(job.id, "done"), "Done")
        finally:
            gate.set()
        await w.fake.wait_for(
            lambda: len(w.fake.channel_messages(logs)) == 3, what="three log lines"
        )
    assert traced(caplog) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


refuse_posts = test_discord_faults.refuse_posts  # the fixture, shared


def delete_by_moderator(w, message_id: int) -> None:
    """A moderator deletes the bot's message in the client (the bot sees MESSAGE_DELETE)."""
    stored = w.fake.world.messages[message_id]
    stored.deleted = True
    w.fake.schedule_message_event("MESSAGE_DELETE", stored)


@pytest.mark.parametrize("late", [False, True])
async def test_a_member_whose_status_message_was_deleted_still_hears_how_the_job_ended(
    tmp_path, caplog, late
):
    """A moderator deletes the status message mid-job (10008 Unknown Message) and the job is
    then blocked: the status message was the only place the member would have read it, so
    they are told privately (a follow-up while the token lives, else a DM)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("block", runtime=300), prompt="a deleted status")
        created_at = datetime.now(UTC) - (PAST_THE_TOKEN if late else timedelta(0))
        handle = await create(w, "a deleted status", created_at=created_at)
        job = await started(w, handle)
        assert job.status_message_id is not None
        delete_by_moderator(w, job.status_message_id)
        job = await w.wait_job(job.id, "blocked", timeout=30)

        def told() -> list[dict]:
            where = w.fake.dm_messages(w.member) if late else handle.followups[1:]
            return [m for m in where if "content filter blocked" in text_of(m)]

        [notice] = await w.fake.wait_for(told, what="the member told of the block")
        assert late or is_ephemeral(notice)
        assert w.fake.is_deleted(job.status_message_id)
        assert await w.available() == 1000  # a block is not charged
    assert traced(caplog) == []


@pytest.fixture
def drop_status_posts(monkeypatch):
    """drop_status_posts.append(1): the next public follow-up (a status message) loses its
    connection before Discord creates it (a reset, a proxy timing out)."""
    drops: list[int] = []
    original = fake_rest.RestApi.execute_webhook

    async def execute_webhook(self, request):
        if drops and request.query.get("wait") in ("1", "true"):
            body = await request.read()
            if b'"embeds"' in body and b'"flags": 64' not in body:
                drops.pop()
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=204)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "execute_webhook", execute_webhook)
    return drops


async def test_a_status_post_cut_off_by_the_network_still_starts_the_job(
    tmp_path, caplog, drop_status_posts
):
    """The job was admitted and its Buzz held when the connection dropped: it runs at once
    and its result is posted, instead of "Something went wrong … nothing was charged" and a
    traceback, with the hold left for the reconciler to find a minute later."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        drop_status_posts.append(1)
        handle = await create(w, "a dropped status")
        job = await w.only_job()
        job = await w.wait_job(job.id, "done", timeout=30)
        await w.wait_result(job.id)
        assert job.charged == 13 and await w.available() == 1000 - 13
        assert not any("Something went wrong" in text_of(m) for m in handle.followups)
    assert traced(caplog) == []


def fail_user_lookup_once(monkeypatch) -> list[int]:
    """Discord answers the bot's next member look-up (GET /users/{id}) with 503, once; the
    list left is empty once that failure was served."""
    failures = [503]  # discord.py does not retry a 503 itself
    original = fake_rest.RestApi.get_user

    async def get_user(self, request):
        if failures:
            raise ApiError(failures.pop(), 0, "503: Service Unavailable")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "get_user", get_user)
    return failures


async def test_discord_failing_to_look_up_the_member_for_a_dm_is_retried(
    tmp_path, caplog, monkeypatch, refuse_posts
):
    """The channel refuses the result (403) and Discord answers 503 while the bot looks the
    member up for the DM: a passing outage, so the post is tried again and the result
    arrives, instead of the job failing as "nowhere to post" with the images charged."""
    fail_user_lookup_once(monkeypatch)
    async with world(tmp_path) as w:
        await w.grant(1000)
        refuse_posts[w.channel] = missing_permissions()
        h = await create(w, "an outage", created_at=datetime.now(UTC) - PAST_THE_TOKEN)
        job = await w.wait_job((await started(w, h)).id, "done", "failed", timeout=60)
        assert job.status.value == "done", job.error
        [dm] = w.fake.dm_messages(w.member)
        assert dm["attachments"] and job.charged == 13
    assert traced(caplog) == []


async def test_a_channel_deleted_while_the_job_runs_sends_the_result_by_dm(tmp_path, caplog):
    """An admin deletes the channel mid-job: the paid-for result reaches the member by DM,
    once, charged once, without a traceback."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("never"))
        job = await started(w, await create(w, "a channel about to go"))
        await w.wait_job(job.id, "running")
        delete_channel(w, w.channel)
        await w.fake.settle()
        workflow = w.sim.workflow_for(job.id)
        assert workflow is not None
        workflow.outcome, workflow.t_done = Outcome("succeed"), time.monotonic()
        workflow.notify()
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        [dm] = [m for m in w.fake.dm_messages(w.member) if m["attachments"]]
        assert "could not post" in dm["content"] and job.delivered_message_ids == [int(dm["id"])]
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []
