"""A delivery's turn (bot/engine/turns.py) covers only the work that holds images in memory:
Discord being slow to take a job's final status edit, its moderators' notice or a rate-limited
post never keeps other jobs' results from being posted."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from bot.civitai.simulator import Outcome
from bot.discord_adapter import result_routes, uploads
from tests.discord.harness import started, world
from tests.discord.test_discord_faults import PAST_THE_TOKEN, create, traced
from tests.fakes import rest as fake_rest


@pytest.fixture
def hold_final_status(monkeypatch):
    """Edits that show a job as Done wait until the returned event is set (Discord slow to
    answer them: a rate-limited webhook, a stalled request)."""
    gate = asyncio.Event()
    held: list[str] = []
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        body = await request.read()
        if b"Done" in body and not gate.is_set():
            held.append(request.match_info["message_id"])
            await gate.wait()
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    return gate, held


async def test_stalled_final_status_edits_do_not_hold_up_other_results(
    tmp_path, caplog, hold_final_status
):
    """Two jobs' Done edits hang (as many as there are delivery turns): a third job's result
    is still posted, and the two finish showing Done once Discord answers."""
    gate, held = hold_final_status
    async with world(tmp_path) as w:
        await w.grant(1000)
        try:
            first = [await started(w, await create(w, f"a stalled status {n}")) for n in range(2)]
            await w.fake.wait_for(lambda: len(held) == 2, what="both Done edits held")
            w.sim.script(Outcome("succeed"), prompt="a third job")
            third = await started(w, await create(w, "a third job"))
            await w.wait_result(third.id)
        finally:
            gate.set()
        for job in [*first, third]:
            await w.wait_status(await w.wait_job(job.id, "done"), "Done")
            assert len(w.results_of(job.id)) == 1
    assert traced(caplog) == []


def rate_limited(retry_after: float) -> web.Response:
    """Discord's 429 as its edge sends it (with `Via`: without it discord.py takes the 429
    for a Cloudflare ban and raises at once)."""
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    return web.Response(
        status=429,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Via": "1.1 google"},
    )


@pytest.fixture
def limit_result_posts(monkeypatch):
    """limit_result_posts.append(seconds): the next result post (a follow-up or a channel
    message with files) is answered 429 asking to wait that long."""
    waits: list[float] = []
    follow_up = fake_rest.RestApi.execute_webhook
    channel_post = fake_rest.RestApi.create_message

    def limited(original):
        async def handler(self, request):
            if waits and request.content_type.startswith("multipart/"):  # files: a result
                return rate_limited(waits.pop())
            return await original(self, request)

        return handler

    monkeypatch.setattr(fake_rest.RestApi, "execute_webhook", limited(follow_up))
    monkeypatch.setattr(fake_rest.RestApi, "create_message", limited(channel_post))
    return waits


@pytest.mark.parametrize("late", [False, True])
async def test_a_long_rate_limit_on_the_result_post_is_retried_later(
    tmp_path, caplog, limit_result_posts, late
):
    """Discord asks the bot to wait an hour before posting (a follow-up, or past the token a
    channel message): the bot does not sleep an hour holding a delivery turn (past the job's
    delivery deadline, with every other result waiting behind), it tries again soon, once."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        limit_result_posts.append(3600.0)
        created_at = datetime.now(UTC) - (PAST_THE_TOKEN if late else timedelta(0))
        job = await started(w, await create(w, "a rate limit", created_at=created_at))
        await w.wait_result(job.id, timeout=30)
        job = await w.wait_job(job.id, "done")
        assert limit_result_posts == [] and len(w.results_of(job.id)) == 1
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


@pytest.fixture
def stall_a_status_edit(monkeypatch):
    """The first edit of a status message before the job's end waits until the returned event
    is set (Discord not answering it); the list records that it was held."""
    gate = asyncio.Event()
    held: list[str] = []
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        body = await request.read()
        message_id = request.match_info["message_id"]
        if message_id != "@original" and b"Done" not in body and not held:
            held.append(message_id)
            await gate.wait()
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    return gate, held


async def test_a_status_edit_discord_never_answers_does_not_hold_up_the_result(
    tmp_path, caplog, monkeypatch, stall_a_status_edit
):
    """While an edit waits for its answer discord.py holds every other call on the
    interaction's webhook, the result's post too (and with it a delivery turn), for as long as
    aiohttp waits: 5 minutes. The edit is given up in time and shown again later."""
    monkeypatch.setattr(result_routes, "EDIT_WAIT", 1.0)  # 30 s in production
    gate, held = stall_a_status_edit
    async with world(tmp_path) as w:
        await w.grant(1000)
        try:
            job = await started(w, await create(w, "a stalled edit"))
            await w.fake.wait_for(lambda: held, what="a status edit held")
            await w.wait_result(job.id, timeout=20)
            await w.wait_status(await w.wait_job(job.id, "done"), "Done")
        finally:
            gate.set()
        assert len(w.results_of(job.id)) == 1
    assert traced(caplog) == []


@pytest.fixture
def never_answer_a_result_post(monkeypatch):
    """The first result post (a follow-up with files) is made, or not, and never answered
    (until the returned event is set): a connection Discord stopped reading from."""
    gate = asyncio.Event()
    held: list[bool] = []
    original = fake_rest.RestApi.execute_webhook

    def made(landed: bool):
        async def execute_webhook(self, request):
            if request.content_type.startswith("multipart/") and not held:
                held.append(landed)
                if landed:
                    await original(self, request)
                await gate.wait()
                return web.Response(status=204)  # the bot gave up on it long ago
            return await original(self, request)

        return execute_webhook

    def install(landed: bool) -> None:
        monkeypatch.setattr(fake_rest.RestApi, "execute_webhook", made(landed))

    return install, gate, held


@pytest.mark.parametrize("landed", [False, True])
async def test_a_result_post_discord_never_answers_is_given_up_and_posted_once(
    tmp_path, caplog, monkeypatch, never_answer_a_result_post, landed
):
    """aiohttp would wait 5 minutes for the answer, holding a delivery turn. The post is
    given up in time; the result is then looked for (it may have landed) and posted if not:
    one copy either way, and the job is done."""
    monkeypatch.setattr(uploads, "POST_WAIT", 1.0)  # 60 s (and upload time) in production
    install, gate, held = never_answer_a_result_post
    install(landed)
    async with world(tmp_path) as w:
        await w.grant(1000)
        try:
            job = await started(w, await create(w, "a post never answered"))
            await w.wait_status(await w.wait_job(job.id, "done", timeout=30), "Done")
        finally:
            gate.set()
        assert held == [landed]
        assert len(w.results_of(job.id)) == 1
    assert traced(caplog) == []


async def test_a_result_that_landed_before_a_busy_hour_is_found_not_posted_again(
    tmp_path, caplog, monkeypatch, never_answer_a_result_post
):
    """The post landed but its answer never came, and by the time the bot looks for it the
    channel has moved on by hundreds of messages: the result is found all the same (not
    posted a second time)."""
    monkeypatch.setattr(uploads, "POST_WAIT", 1.0)
    install, gate, held = never_answer_a_result_post
    install(True)
    async with world(tmp_path) as w:
        await w.grant(1000)
        look = w.fake.hold_requests("GET", rf"/channels/{w.channel}/messages$")
        try:
            job = await started(w, await create(w, "a busy channel"))
            await w.fake.wait_for(lambda: held, what="the result post made")
            for n in range(250):
                await w.fake.post_message(w.channel, w.other, f"chatter {n}")
            look.set()
            job = await w.wait_job(job.id, "done", timeout=30)
        finally:
            gate.set()
        assert len(w.results_of(job.id)) == 1
        assert job.delivered_message_ids == [int(w.results_of(job.id)[0]["id"])]
    assert traced(caplog) == []
