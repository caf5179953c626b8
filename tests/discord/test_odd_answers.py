"""Discord's HTTP API answering oddly at a member-facing step (a connection dropped after the
request was sent, a 200 whose body is not JSON, a proxy's HTML error page): a passing fault,
worked around with one warning line and no traceback; the member's job still runs and its
result is posted once."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web

from bot.civitai.simulator import Outcome
from tests.discord.harness import answer, buttons, finished, job_of, started, text_of, world
from tests.discord.test_discord_faults import create, traced
from tests.fakes import rest as fake_rest

HTML = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"


def dropped(request: web.Request) -> web.Response:
    """The connection closes before the answer is written (a reset, a proxy timing out)."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=204)


def drop_callbacks(monkeypatch, kind: int) -> list[bool]:
    """A list `drops`: drops.append(applied) makes the next interaction answer of type `kind`
    lose its connection after the request was sent; `applied`: Discord took it all the same."""
    drops: list[bool] = []
    original = fake_rest.RestApi.callback
    pattern = re.compile(rb'"type": ?%d\b' % kind)

    async def callback(self, request):
        answer = drops and not request.content_type.startswith("multipart/")
        if answer and pattern.search(await request.read()):
            if drops.pop(0):
                await original(self, request)
            return dropped(request)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "callback", callback)
    return drops


@pytest.fixture
def drop_defers(monkeypatch):
    """The next "thinking…" defers (type 5), as drop_callbacks."""
    return drop_callbacks(monkeypatch, 5)


@pytest.mark.parametrize("applied", [True, False], ids=["acknowledged", "lost"])
async def test_a_defer_cut_off_by_the_network_still_runs_the_job(
    tmp_path, caplog, drop_defers, applied
):
    async with world(tmp_path) as w:
        await w.grant(1000)
        drop_defers.append(applied)
        handle = await create(w, "a dropped defer")
        job = await started(w, handle)
        job = await w.wait_job(job.id, "done", timeout=30)
        assert len(w.results_of(job.id)) == 1
        assert job.charged == 13 and await w.available() == 1000 - 13
        assert drop_defers == []
    assert traced(caplog) == []


@pytest.fixture
def garble_status_edits(monkeypatch):
    """garble_status_edits.append(response): the next edit of a status message is made, but
    answered with `response` (a 200 whose body is not the message)."""
    answers: list[web.Response] = []
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        response = await original(self, request)
        if answers and request.match_info["message_id"] != "@original":
            return answers.pop(0)
        return response

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    return answers


async def test_a_status_edit_answered_with_html_is_a_passing_fault(
    tmp_path, caplog, garble_status_edits
):
    async with world(tmp_path) as w:
        await w.grant(1000)
        garble_status_edits.append(web.Response(status=200, text=HTML, content_type="text/html"))
        job = await started(w, await create(w, "a garbled edit"))
        job = await w.wait_job(job.id, "done", timeout=30)
        await w.wait_status(job, "Done")
        assert len(w.results_of(job.id)) == 1 and garble_status_edits == []
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


@pytest.fixture
def lose_status_answers(monkeypatch):
    """lose_status_answers.append(kind): the next public status message is posted, but its
    answer is lost ("dropped": the connection closes) or is a proxy's HTML page ("html")."""
    kinds: list[str] = []
    original = fake_rest.RestApi.execute_webhook

    async def execute_webhook(self, request):
        if kinds and not request.content_type.startswith("multipart/"):  # files: a result
            body = await request.read()
            if b'"embeds"' in body and not re.search(rb'"flags": ?64', body):
                await original(self, request)
                if kinds.pop(0) == "dropped":
                    return dropped(request)
                return web.Response(status=200, text=HTML, content_type="text/html")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "execute_webhook", execute_webhook)
    return kinds


@pytest.mark.parametrize("kind", ["dropped", "html"])
async def test_a_status_message_whose_answer_was_lost_still_shows_the_end(
    tmp_path, caplog, lose_status_answers, kind
):
    """The status message was posted but Discord's answer never arrived: the bot finds it in
    the channel, so it says Done in the end instead of "Queued" (with a Cancel) for good."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        lose_status_answers.append(kind)
        await create(w, "a lost answer")
        job = await w.wait_job((await w.only_job()).id, "done", timeout=30)
        assert lose_status_answers == []
        statuses = [m for m in w.channel_messages() if f"job {job.id}" in text_of(m)]
        assert len(statuses) == 2  # the status message and the result
        assert job.status_message_id is not None
        await w.wait_status(job, "Done")
        assert len(w.results_of(job.id)) == 1
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


@pytest.fixture
def drop_answers(monkeypatch):
    """The next message answers (type 4), as drop_callbacks."""
    return drop_callbacks(monkeypatch, 4)


@pytest.mark.parametrize("applied", [True, False], ids=["acknowledged", "lost"])
async def test_an_answer_cut_off_by_the_network_still_reaches_the_member(
    tmp_path, caplog, drop_answers, applied
):
    """/buzz balance: its answer is sent again at once, so the member reads their balance
    (once) instead of "The application did not respond"."""
    async with world(tmp_path) as w:
        await w.grant(40)
        drop_answers.append(applied)
        handle = await w.fake.slash(w.guild, w.channel, w.member, "buzz balance", {})
        answer = await handle.original()
        assert "**40 Buzz** available" in text_of(answer) and handle.ephemeral
        assert drop_answers == [] and handle.followups == []
    assert traced(caplog) == []


@pytest.fixture
def lose_post_answers(monkeypatch):
    """lose_post_answers[channel_id] = [kind, ...]: the next posts in that channel are made,
    but their answers are lost ("dropped") or are a proxy's HTML page ("html")."""
    kinds: dict[int, list[str]] = {}
    original = fake_rest.RestApi.create_message

    async def create_message(self, request):
        pending = kinds.get(int(request.match_info["channel_id"]))
        if pending:
            await original(self, request)
            if pending.pop(0) == "dropped":
                return dropped(request)
            return web.Response(status=200, text=HTML, content_type="text/html")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "create_message", create_message)
    return kinds


@pytest.mark.parametrize("kind", ["dropped", "html"])
async def test_a_review_item_whose_answer_was_lost_is_not_posted_twice(
    tmp_path, caplog, lose_post_answers, kind
):
    """The moderators' item was posted but Discord's answer was lost: the bot finds it when
    it tries again, instead of a second copy beside one that is never updated."""
    async with world(tmp_path) as w:
        mods = w.fake.add_channel(w.guild, "mods")
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        w.sim.script(Outcome("block"), prompt="a blocked lighthouse")
        lose_post_answers[mods] = [kind]
        await create(w, "a blocked lighthouse")
        job = await w.wait_job((await w.only_job()).id, "blocked", timeout=30)
        item = await w.services.moderation.item_for_job(job.id)
        assert item is not None
        async with asyncio.timeout(30):  # posted again after a passing fault: 2.5-5 s later
            while item.message_id is None:
                await asyncio.sleep(0.05)
                item = await w.services.moderation.item(item.id)
                assert item is not None
        [posted] = w.fake.channel_messages(mods)
        assert item.message_id == int(posted["id"])
        assert lose_post_answers[mods] == [] and await w.available() == 1000
    assert traced(caplog) == []


@pytest.fixture
def drop_updates(monkeypatch):
    """The next updates of a clicked message (type 7), as drop_callbacks."""
    return drop_callbacks(monkeypatch, 7)


@pytest.mark.parametrize("applied", [True, False], ids=["acknowledged", "lost"])
async def test_a_confirmation_cut_off_by_the_network_still_starts_the_job(
    tmp_path, caplog, drop_updates, applied
):
    """Confirm on a costly request: its "Confirmed" answer loses its connection. The job
    starts all the same, instead of the member reading "Confirmed" with nothing started
    (their question used up, a second click "expired")."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.set_guild(confirm_above=200)
        options = {"prompt": "a golden gate", "size": "1024x1024", "quality": "high"}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        question = await answer(h)
        drop_updates.append(applied)
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        status = await click.wait_for_followup(timeout=30)
        job = await w.wait_job((await job_of(w, int(status["id"]))).id, "done", timeout=30)
        assert len(w.results_of(job.id)) == 1 and drop_updates == []
        assert "Started: 286 Buzz held" in w.fake.message(int(question["id"]))["content"]
        assert job.charged == 286 and await w.available() == 1000 - 286
    assert traced(caplog) == []


@pytest.fixture
def fail_taken_defers(monkeypatch):
    """fail_taken_defers.append(response): the next "thinking…" defer is taken by Discord but
    answered with `response` (its edge failing after the fact); discord.py sends it again."""
    answers: list[web.Response] = []
    original = fake_rest.RestApi.callback

    async def callback(self, request):
        defer = answers and not request.content_type.startswith("multipart/")
        if defer and re.search(rb'"type": ?5\b', await request.read()):
            await original(self, request)
            return answers.pop(0)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "callback", callback)
    return answers


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [(502, HTML.encode(), "text/html"), (503, b'{"error": "upstream"}', "application/json")],
    ids=["502-html", "503-json"],
)
async def test_a_defer_taken_but_answered_5xx_still_runs_the_job(
    tmp_path, caplog, fail_taken_defers, status, body, content_type
):
    """discord.py's own retry of the defer is refused as "already acknowledged": that means
    it landed, so the job starts, instead of "thinking…" for ever."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        failed = web.Response(status=status, body=body, headers={"Content-Type": content_type})
        fail_taken_defers.append(failed)
        job = await started(w, await create(w, "a failed defer"))
        job = await w.wait_job(job.id, "done", timeout=30)
        assert len(w.results_of(job.id)) == 1 and fail_taken_defers == []
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


@pytest.fixture
def lose_result_posts(monkeypatch):
    """lose_result_posts.append(1): the next result post (files) as a follow-up loses its
    connection before Discord makes it."""
    drops: list[int] = []
    original = fake_rest.RestApi.execute_webhook

    async def execute_webhook(self, request):
        if drops and request.content_type.startswith("multipart/"):
            drops.pop()
            return dropped(request)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "execute_webhook", execute_webhook)
    return drops


async def test_an_odd_answer_while_looking_for_a_lost_result_post_is_a_passing_fault(
    tmp_path, caplog, monkeypatch, lose_result_posts
):
    """The result's post lost its connection; looking for it before posting again, the bot
    asks Discord for the member (to read their DMs) and gets an HTML page: it looks again
    later, instead of an 'unexpected error' traceback."""
    pages = [1]
    original = fake_rest.RestApi.get_user

    async def get_user(self, request):
        if pages:
            pages.pop()
            return web.Response(status=200, text=HTML, content_type="text/html")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "get_user", get_user)
    async with world(tmp_path) as w:
        await w.grant(1000)
        lose_result_posts.append(1)
        job = await started(w, await create(w, "a lost result"))
        job = await w.wait_job(job.id, "done", timeout=30)
        assert lose_result_posts == [] and pages == []
        assert len(w.results_of(job.id)) == 1
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


@pytest.fixture
def drop_private_notes(monkeypatch):
    """drop_private_notes.append(1): the next private (ephemeral) follow-up loses its
    connection before Discord makes it."""
    drops: list[int] = []
    original = fake_rest.RestApi.execute_webhook

    async def execute_webhook(self, request):
        private = drops and not request.content_type.startswith("multipart/")
        if private and re.search(rb'"flags": ?64', await request.read()):
            drops.pop()
            return dropped(request)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "execute_webhook", execute_webhook)
    return drops


async def test_a_private_notice_cut_off_by_the_network_is_sent_by_dm(
    tmp_path, caplog, drop_private_notes
):
    """A result rated above its channel's level is kept from it; the private follow-up that
    tells the member loses its connection: they are told by DM, instead of not at all (and a
    traceback)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await started(w, await create(w, "a fox at night [sim:r]"))
        drop_private_notes.append(1)
        job = await w.wait_job(job.id, "blocked", timeout=30)
        notice = "rated R and this channel allows up to PG-13"
        await w.fake.wait_for(
            lambda: [m for m in w.fake.dm_messages(w.member) if notice in text_of(m)],
            what="the member told by DM",
        )
        assert drop_private_notes == [] and w.results_of(job.id) == []
    assert traced(caplog) == []


@pytest.mark.parametrize("kind", ["dropped", "html"])
async def test_an_upscale_whose_status_post_lost_its_answer_still_runs(
    tmp_path, caplog, lose_status_answers, kind
):
    """Upscale on a result: its status message's post loses Discord's answer. The job was
    admitted and its Buzz held: it runs and shows its end, instead of "Discord had a problem
    with that" with the Buzz held until the reconciler finds it."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await finished(w, await started(w, await create(w, "a lantern")))
        lose_status_answers.append(kind)
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await w.new_job({j.id for j in await w.jobs()}, timeout=30)
        job = await w.wait_job(job.id, "done", timeout=30)
        assert lose_status_answers == [] and job.status_message_id is not None
        await w.wait_status(job, "Done")
        assert len(w.results_of(job.id)) == 1
        assert not any("problem" in text_of(m) for m in click.followups)
    assert traced(caplog) == []


@pytest.mark.parametrize("applied", [True, False], ids=["shown", "lost"])
async def test_an_enhancement_whose_private_status_lost_its_answer_still_runs(
    tmp_path, caplog, monkeypatch, applied
):
    """enhance:True: the private "Enhancing your prompt first" edit loses its connection.
    The enhancement was admitted and its Buzz held: it runs and the member gets the choice,
    instead of "Discord had a problem" with the Buzz held until the reconciler finds it."""
    drops = [applied]
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        if drops and b"Enhancing your prompt" in await request.read():
            if drops.pop():
                await original(self, request)
            return dropped(request)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    async with world(tmp_path) as w:
        await w.grant(1000)
        options = {"prompt": "a cat on a windowsill", "quality": "low", "enhance": True}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        choice = await h.wait_for_followup(1, timeout=20)
        assert set(buttons(choice)) == {"Use enhanced", "Keep mine", "Cancel"}
        [job] = await w.jobs()
        job = await w.wait_job(job.id, "done")
        assert drops == [] and job.charged == 1 and await w.available() == 999
    assert traced(caplog) == []


async def test_a_defer_lost_twice_still_tells_the_member_something_went_wrong(
    tmp_path, caplog, drop_defers
):
    """The "thinking…" defer reaches Discord but its answer is lost, and the resend is lost
    too: the bot gives up on the command. Its error message must still reach the member (as a
    follow-up of the "thinking…" that landed), not leave "thinking…" spinning for ever."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        drop_defers.extend([True, False])
        handle = await create(w, "a defer lost twice")
        message = await handle.wait_for_followup(1, timeout=15)
        assert "Discord had a problem" in text_of(message), text_of(message)
        assert await w.jobs() == [] and await w.available() == 1000
    assert traced(caplog) == []
