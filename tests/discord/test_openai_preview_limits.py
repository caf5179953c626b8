"""Partial images on the status message, within Discord's limits and the bot's memory: a
preview is fitted to the channel's upload limit (a 4K PNG partial was refused with a 413 on
every edit, so the member saw none), one that does not decode is not shown, preview edits are
paced across all jobs, and the previews waiting are bounded in bytes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from bot.store.jobs import JobStatus
from tests.discord.harness import World, buttons, image_size, png, started
from tests.discord.test_discord_faults import traced
from tests.discord.test_openai_lane import openai_world, preview_edits
from tests.fakes import rest as fake_rest

pytestmark = pytest.mark.timeout(90)


async def create(w: World, prompt: str = "a fox", **options: Any) -> Any:
    handle = await w.fake.slash(
        w.guild,
        w.channel,
        w.member,
        "create gpt-image-1",
        options={"prompt": prompt, "quality": "low", **options},
    )
    return await started(w, handle)


async def test_a_preview_over_the_upload_limit_is_fitted_and_shown(tmp_path, caplog):
    """The channel takes files of 4 000 bytes; each partial is a ~5 KB PNG. The preview is
    shown, under the limit, while the image still forms."""
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        w.fake.upload_limit = 4000
        gate = sim.hold_final_images()
        job = await create(w, format="png")
        status_id = job.status_message_id
        assert status_id is not None

        def shown() -> list[Any]:
            return w.fake.message(status_id)["attachments"]

        [attachment] = await w.fake.wait_for(shown, timeout=20, what="a preview shown")
        data = w.fake.attachment_bytes(attachment)
        width, height = image_size(data)  # it decodes
        assert len(data) <= 4000 and width == height
        assert not [c for c in preview_edits(w, status_id) if c.status == 413]
        gate.set()
        job = await w.wait_job(job.id, "done", timeout=30)
        await w.wait_status(job, "Done")
        assert w.fake.message(status_id)["attachments"] == []
    assert traced(caplog) == []


async def test_a_preview_that_does_not_decode_is_not_shown(tmp_path, caplog):
    """The endpoint's partials are cut short (a valid PNG signature, half the file): they are
    skipped, not shown broken; the result is posted as usual."""
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        sim.script("bad_partial")
        job = await create(w, format="png")
        status_id = job.status_message_id
        assert status_id is not None
        job = await w.wait_job(job.id, "done", timeout=30)
        await w.wait_status(job, "Done")
        assert preview_edits(w, status_id) == []
        assert len(w.results_of(job.id)) == 1 and job.charged > 0
    assert traced(caplog) == []


@pytest.fixture
def held_previews(monkeypatch):
    """Every preview upload (a status edit with a file) waits at the fake until `release` is
    set; `in_flight` counts those waiting now, `most` the most at once."""
    state: dict[str, Any] = {"release": asyncio.Event(), "in_flight": 0, "most": 0}
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        if request.content_type.startswith("multipart/"):
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            try:
                await state["release"].wait()
            finally:
                state["in_flight"] -= 1
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    return state


async def test_preview_edits_are_paced_across_jobs_and_bounded_in_memory(
    tmp_path, caplog, held_previews
):
    """Three jobs stream their previews while Discord is slow to take uploads: one preview
    upload at a time for the whole bot (each job had its own, so twenty jobs sent twenty at
    once), and the previews waiting keep within their byte budget (each job's newest was
    kept, whatever its size and however many jobs)."""
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(3000)
        previews = w.bot.publisher.previews
        offers: list[int] = []
        real_offer = previews.offer

        def offer(job: Any, image: bytes, mime: str) -> None:
            offers.append(len(image))
            real_offer(job, image, mime)

        previews.offer = offer  # type: ignore[method-assign]
        # Room for one partial waiting (each is about 6 KB), besides the one being shown.
        previews.budget = 9000
        gate = sim.hold_final_images()
        jobs = [await create(w, f"a fox {n}") for n in range(3)]
        await w.fake.wait_for(lambda: len(offers) >= 6, timeout=20, what="every partial")
        assert max(offers) <= 9000 < 2 * min(offers)
        await w.fake.wait_for(lambda: held_previews["in_flight"], what="a preview upload")
        assert held_previews["in_flight"] == 1  # each job's first preview, all at once
        waiting = sum(1 for job in jobs if job.id in getattr(previews, "_waiting", {}))
        assert getattr(previews, "waiting_bytes", 10**9) <= 9000 and waiting <= 1
        held_previews["release"].set()
        gate.set()
        for job in jobs:
            done = await w.wait_job(job.id, "done", timeout=30)
            await w.wait_status(done, "Done")
        assert held_previews["most"] == 1
        uploads = [c for job in jobs for c in preview_edits(w, job.status_message_id)]
        assert 1 <= len(uploads) <= 2
    assert traced(caplog) == []


async def test_a_preview_that_comes_after_the_job_ended_is_not_shown(tmp_path, caplog):
    """A preview handed to the publisher once the job has ended (a late partial) stays off the
    status message: the ended job's previews were forgotten along with its closed mark, so it
    came back as a "running" status with the preview and a Cancel button."""
    async with openai_world(tmp_path) as (w, _sim):
        await w.grant(1000)
        job = await create(w)
        status_id = job.status_message_id
        assert status_id is not None
        job = await w.wait_job(job.id, "done", timeout=30)
        await w.wait_status(job, "Done")
        before = len(preview_edits(w, status_id))
        # The record as the lane's call last saw it: still running.
        running = replace(job, status=JobStatus.RUNNING)
        await w.bot.publisher.on_preview(running, png(320, 320), "image/png")
        # A status edit of another job goes through the same publisher after it.
        other = await create(w, "a hare")
        await w.wait_status(await w.wait_job(other.id, "done", timeout=30), "Done")
        assert len(preview_edits(w, status_id)) == before
        shown = w.fake.message(status_id)
        assert shown["attachments"] == [] and "Cancel" not in buttons(shown)
    assert traced(caplog) == []
