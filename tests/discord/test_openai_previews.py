"""Partial images on the public status message under Discord's faults: whatever Discord answers
to the status edits, a preview never stays on the message once the job has ended (a preview of
an image the service then blocked would otherwise stay in the channel)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web

from bot.discord_adapter import ratelimits
from bot.store.previews import ShownPreviews
from tests.discord.harness import World, buttons, field_value, settings_for, started
from tests.discord.test_delivery_stalls import rate_limited
from tests.discord.test_discord_faults import traced
from tests.discord.test_openai_lane import openai_world, preview_edits
from tests.fakes import rest as fake_rest

pytestmark = pytest.mark.timeout(90)


def hold_second_partial(sim) -> asyncio.Event:
    """The stream waits before its second partial image until the returned event is set."""
    gate = asyncio.Event()
    real = sim._image

    async def image(job, index, partial):
        if partial == 1:
            await gate.wait()
        return await real(job, index, partial)

    sim._image = image
    return gate


@pytest.fixture
def fault_edits_saying(monkeypatch):
    """fault_edits_saying.append((word, fault)): the next status edit through the interaction
    webhook whose body holds `word` meets `fault`: "429" (a retry_after just over what the bot
    waits out in place, lowered so the test does not wait 30 seconds) or "drop" (the
    connection closes before Discord answers: a reset, a proxy timing out)."""
    faults: list[tuple[bytes, str]] = []
    original = fake_rest.RestApi.edit_webhook_message
    monkeypatch.setattr(ratelimits, "RATE_LIMIT_WAIT", 0.2)

    async def edit_webhook_message(self, request):
        if request.content_type.startswith("multipart/"):  # a preview (its body read later)
            return await original(self, request)
        body = await request.read()
        for word, fault in faults:
            if word in body:
                faults.remove((word, fault))
                if fault == "429":
                    return rate_limited(0.5)
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=204)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    return faults


async def a_fox(w: World) -> Any:
    """/create gpt-image-1 of a fox, started: its job (with its status message)."""
    handle = await w.fake.slash(
        w.guild,
        w.channel,
        w.member,
        "create gpt-image-1",
        options={"prompt": "a fox", "quality": "low"},
    )
    return await started(w, handle)


async def blocked_after_a_preview(w: World, sim) -> Any:
    gate = hold_second_partial(sim)
    sim.script("error_event", code="moderation_blocked")
    job = await a_fox(w)
    status_id = job.status_message_id
    assert status_id is not None
    await w.fake.wait_for(lambda: preview_edits(w, status_id), what="a preview shown")
    assert w.fake.message(status_id)["attachments"]
    gate.set()
    return await w.wait_job(job.id, "blocked", timeout=30)


def ended(w: World, job: Any) -> dict[str, Any] | None:
    """The status message once it says the job was blocked."""
    shown = w.status_message(job)
    return shown if "blocked" in field_value(shown, "Status").lower() else None


@pytest.mark.parametrize("fault", ["429", "drop"])
async def test_a_failed_final_edit_is_made_again_and_takes_a_blocked_jobs_preview_off(
    tmp_path, caplog, fault_edits_saying, fault
):
    """The service blocks the image after a preview of it was shown, and the status edit that
    says so is rate limited or loses its connection: the edit is made again, and it takes the
    preview off. (After a 429 the retried edit had forgotten the preview, so the blocked image
    stayed in the channel; after a drop nothing tried again: the message said "rendering",
    with the preview and a Cancel button, for good.)"""
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        fault_edits_saying.append((b"blocked", fault))
        job = await blocked_after_a_preview(w, sim)
        shown = await w.fake.wait_for(lambda: ended(w, job), what="the status edit made again")
        assert shown is not None
        assert fault_edits_saying == []  # the first try met the fault
        assert shown["attachments"] == []
        assert "image" not in shown["embeds"][0]
        assert "Cancel" not in buttons(shown)
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []


async def test_a_dropped_done_edit_is_made_again(tmp_path, caplog, fault_edits_saying):
    """The result is posted but the edit that says Done loses its connection: it is made
    again, instead of the status saying the images are being posted for good."""
    async with openai_world(tmp_path) as (w, _sim):
        await w.grant(1000)
        fault_edits_saying.append((b"Done", "drop"))
        job = await a_fox(w)
        job = await w.wait_job(job.id, "done", timeout=30)
        shown = await w.wait_status(job, "Done")
        assert fault_edits_saying == []
        assert shown["attachments"] == [] and len(w.results_of(job.id)) == 1
    assert traced(caplog) == []


@pytest.fixture
def lose_preview_answers(monkeypatch):
    """Every preview edit (a status edit uploading a file) is made, then its answer is lost:
    the connection closes before it arrives (a reset, a proxy timing out)."""
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        response = await original(self, request)
        if request.content_type.startswith("multipart/"):
            assert request.transport is not None
            request.transport.close()
        return response

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)


async def test_a_preview_whose_answer_was_lost_is_still_taken_off(
    tmp_path, caplog, lose_preview_answers
):
    """Discord made the preview edits but their answers never arrived: the bot did not count
    the preview as shown, so the edits that followed left it on the message, next to the
    result, for good."""
    async with openai_world(tmp_path) as (w, _sim):
        await w.grant(1000)
        job = await a_fox(w)
        status_id = job.status_message_id
        assert status_id is not None
        job = await w.wait_job(job.id, "done", timeout=30)
        shown = await w.wait_status(job, "Done")
        assert preview_edits(w, status_id)  # a preview was put on the message
        assert shown["attachments"] == [] and len(w.results_of(job.id)) == 1
    assert traced(caplog) == []


async def test_a_preview_shown_before_a_restart_comes_off_when_the_new_call_is_blocked(tmp_path):
    """The bot dies while the image streams, a preview of it on the status message; after the
    start the call is made again and the service blocks it. The status says blocked, and the
    preview shown before the restart (of an image the service refused) comes off with it:
    the new process never showed it, but the message still carries it."""
    async with openai_world(tmp_path, jobs={"shutdown_drain_seconds": 0}) as (w, sim):
        await w.grant(1000)
        gate = sim.hold_final_images()  # the first call streams its previews, then waits
        job = await a_fox(w)
        status_id = job.status_message_id
        assert status_id is not None
        await w.fake.wait_for(
            lambda: w.fake.message(status_id)["attachments"], what="a preview shown"
        )
        sim.script("moderation_blocked")
        await w.restart_bot()
        job = await w.wait_job(job.id, "blocked", timeout=30)
        shown = await w.fake.wait_for(lambda: ended(w, job), what="the blocked status")
        gate.set()
        assert shown is not None
        assert shown["attachments"] == []
        assert job.charged == 0 and await w.available() == 1000


async def test_a_preview_comes_off_when_the_operator_switches_back_to_the_orchestrator(
    tmp_path, caplog
):
    """The bot is restarted on the orchestrator (BOT_PROVIDER) while an OpenAI call streams, a
    preview of it on the status message. The new process cannot make the call: the job ends,
    nothing charged, and its status says so. The preview stayed on the message for good (the
    new lane streams nothing, so its edits left attachments alone): a half-made image, never
    moderated, shown as if it were the result."""
    async with openai_world(tmp_path, jobs={"shutdown_drain_seconds": 0}) as (w, sim):
        await w.grant(1000)
        gate = sim.hold_final_images()
        job = await a_fox(w)
        status_id = job.status_message_id
        assert status_id is not None
        await w.fake.wait_for(
            lambda: w.fake.message(status_id)["attachments"], what="a preview shown"
        )
        w.settings = settings_for(tmp_path, discord={"dev_guild": w.guild})
        await w.restart_bot()
        gate.set()
        job = await w.wait_job(job.id, "failed", timeout=30)
        shown = await w.wait_status(job, "another image service")
        assert shown["attachments"] == [] and "image" not in shown["embeds"][0]
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []


async def test_a_preview_left_by_failed_edits_comes_off_at_the_next_start(
    tmp_path, caplog, fault_edits_saying
):
    """The service blocks the image after a preview was shown, and every edit saying so loses
    its connection until the bot stops. Nothing edits an ended job's status again, so the
    preview of the refused image stayed in the channel for good; the next start takes it off
    (the previews shown are kept in the database until taken off)."""
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        fault_edits_saying.extend([(b"blocked", "drop")] * 4)  # every try the bot makes
        job = await blocked_after_a_preview(w, sim)
        await w.fake.wait_for(
            lambda: len(fault_edits_saying) < 4, what="the edit saying blocked, lost"
        )
        await w.restart_bot()
        fault_edits_saying.clear()
        shown = await w.fake.wait_for(
            lambda: ended(w, job) if not w.status_message(job)["attachments"] else None,
            what="the preview taken off",
        )
        assert shown is not None and "image" not in shown["embeds"][0]
        assert "Cancel" not in buttons(shown)
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []


async def test_a_preview_in_a_thread_archived_meanwhile_is_given_up_once(tmp_path, caplog):
    """A moderator archives the thread while the image streams, a preview on the status
    message, and the service then blocks the image. Discord refuses to edit the message (400,
    archived): the preview cannot come off. That is said once, without a traceback, and
    nothing tries again, not even the next start (the member is told the ending privately)."""
    caplog.set_level(logging.INFO, logger="bot.discord_adapter.previews")
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        thread = w.fake.add_thread(w.channel, "foxes", owner_id=w.member)
        await w.fake.settle()
        gate = hold_second_partial(sim)
        sim.script("error_event", code="moderation_blocked")
        handle = await w.fake.slash(
            w.guild, thread, w.member, "create gpt-image-1", {"prompt": "a fox", "quality": "low"}
        )
        job = await started(w, handle)
        status_id = job.status_message_id
        assert status_id is not None
        await w.fake.wait_for(lambda: preview_edits(w, status_id), what="a preview shown")
        w.fake.archive_thread(thread)
        gate.set()
        job = await w.wait_job(job.id, "blocked", timeout=30)
        await w.wait_idle()
        await w.fake.settle()
        given_up = [r for r in caplog.records if "cannot be taken off" in r.getMessage()]
        assert len(given_up) == 1
        edits = len([c for c in w.fake.calls if c.method == "PATCH" and str(status_id) in c.path])
        await w.restart_bot()
        await w.wait_idle()
        await w.fake.settle()
        again = [c for c in w.fake.calls if c.method == "PATCH" and str(status_id) in c.path]
        assert len(again) == edits
        assert await ShownPreviews(w.services.db, w.services.clock).left() == {}
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []


@pytest.mark.parametrize("ending", ["canceled", "failed", "refused"])
async def test_a_preview_comes_off_whenever_the_result_is_not_posted(tmp_path, caplog, ending):
    """Canceled by the member, failed (previews, then no usable image), refused by the service mid-
    stream: the status says so, nothing is charged, and the preview of an image never posted
    is not left on the message."""
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        gate = sim.hold_final_images() if ending == "canceled" else None
        if ending == "failed":
            sim.script("bad_last_image")
        elif ending == "refused":
            sim.script("error_event", code="invalid_request_error")
        job = await a_fox(w)
        status_id = job.status_message_id
        assert status_id is not None
        await w.fake.wait_for(lambda: preview_edits(w, status_id), what="a preview shown")
        if ending == "canceled":
            click = await w.fake.click(
                status_id, buttons(w.status_message(job))["Cancel"], w.member
            )
            await w.fake.wait_for(lambda: click.responded, what="the click answered")
        job = await w.wait_job(job.id, "canceled", "failed", timeout=30)
        if gate is not None:
            gate.set()
        await w.wait_idle()
        await w.fake.settle()
        shown = w.status_message(job)
        assert shown["attachments"] == [] and "image" not in shown["embeds"][0]
        assert "Cancel" not in buttons(shown)
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []
