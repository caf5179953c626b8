"""Edit sources go to the orchestrator's blob store once and the step names them by URL: a
re-roll reuses the upload, an expired URL is refreshed, a lost blob is uploaded again from the
stored bytes, and a refused upload falls back to the data URL."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timedelta

import pytest
from PIL import Image

from bot.catalog import Model, Operation, RequestOptions
from bot.engine.requests import JobRequest, Requester
from bot.store.db import utcnow
from bot.store.jobs import JobRecord, JobStatus, SourceImage
from tests.engine.harness import CHANNEL, GUILD, MEMBER, Harness, harness


class Clock:
    """Real time, moved on by hand: the bot's view of when stored URLs expire."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def source(colour: str = "teal") -> SourceImage:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buffer, "PNG")
    return SourceImage("image", "image/png", 320, 240, buffer.getvalue())


def edit_request(sent: SourceImage, parent: str | None = None) -> JobRequest:
    return JobRequest(
        Requester(GUILD, CHANNEL, MEMBER),
        Model.GPT_IMAGE_2,
        Operation.EDIT,
        RequestOptions(prompt="make it snow", quality="low"),
        sources=(sent,),
        confirmed=True,
        parent_job_id=parent,
    )


async def edit(h: Harness, sent: SourceImage, parent: str | None = None) -> JobRecord:
    job = await h.engine.submit(edit_request(sent, parent))
    await h.settle_all()
    done = await h.job(job.id)
    assert done.status is JobStatus.DONE
    return done


def sent_images(h: Harness) -> list[str]:
    return [template["steps"][0]["input"]["images"][0] for template in h.sim.submissions]


async def test_a_source_is_uploaded_once_and_a_reroll_reuses_its_url(tmp_path):
    sent = source()
    async with harness(tmp_path) as h:
        await h.grant(1000)
        first = await edit(h, sent)
        again = await edit(h, sent, parent=first.id)
        [uploaded] = h.sim.uploads
        assert h.sim.blobs.get(uploaded).data == sent.data  # the bytes as stored, unchanged
        assert [h.sim.blobs.blob_id_of(url) for url in sent_images(h)] == [uploaded, uploaded]
        assert h.sim.requests["upload"] == 1
        assert first.charged == again.charged == 13
        assert await h.available() == 1000 - 26


# Each refused twice: when the source is rated at admission, and when it is to be sent.
@pytest.mark.parametrize(("status", "times"), [(415, 2), (413, 2), (503, 10)])
async def test_a_refused_upload_falls_back_to_the_data_url(tmp_path, status, times):
    sent = source()
    async with harness(tmp_path, client_retries=2) as h:
        await h.grant(1000)
        h.sim.fault(status, route="upload", times=times)
        job = await edit(h, sent)
        [url] = sent_images(h)
        head, _, body = url.partition(",")
        assert head == "data:image/png;base64" and base64.b64decode(body) == sent.data
        assert h.sim.uploads == [] and job.charged == 13


async def test_an_expiring_url_is_refreshed_instead_of_uploading_again(tmp_path):
    sent, clock = source(), Clock()
    async with harness(tmp_path, clock=clock) as h:
        await h.grant(1000)
        first = await edit(h, sent)
        # An hour on, the URL (signed for an hour) would expire before a job's deadline.
        clock.advance(hours=1)
        await edit(h, sent, parent=first.id)
        [uploaded] = h.sim.uploads
        old, fresh = sent_images(h)
        assert old != fresh and h.sim.blobs.blob_id_of(fresh) == uploaded
        assert h.sim.requests["refresh"] == 1 and h.sim.requests["upload"] == 1


async def test_a_lost_blob_is_uploaded_again_from_the_stored_bytes(tmp_path):
    sent, clock = source("olive"), Clock()
    async with harness(tmp_path, clock=clock) as h:
        await h.grant(1000)
        first = await edit(h, sent)
        clock.advance(hours=1)
        h.sim.fault(404, route="refresh")  # the blob store no longer has it
        again = await edit(h, sent, parent=first.id)
        lost, renewed = h.sim.uploads
        assert lost != renewed and h.sim.blobs.get(renewed).data == sent.data
        assert h.sim.blobs.blob_id_of(sent_images(h)[1]) == renewed
        assert again.charged == 13


async def test_a_blob_lost_upstream_before_its_url_expired_is_sent_inline(tmp_path):
    """The bot's URL still looks valid, but the orchestrator cannot load it: it refuses the
    submit, and the bot sends the stored bytes instead, charged once."""
    sent = source("plum")
    async with harness(tmp_path) as h:
        await h.grant(1000)
        first = await edit(h, sent)
        [uploaded] = h.sim.uploads
        h.sim.blobs.lose(uploaded)
        again = await edit(h, sent, parent=first.id)
        assert h.sim.requests["submit"] == 3  # first; the refused one; the inline one
        assert len(h.sim.submissions) == 2  # the refused submit created nothing
        assert sent_images(h)[1].startswith("data:image/png;base64,")
        assert again.charged == 13 and await h.available() == 1000 - 13 - 13


async def test_an_upload_survives_a_restart(tmp_path):
    sent = source("navy")
    async with harness(tmp_path) as h:
        await h.grant(1000)
        first = await edit(h, sent)
        await h.restart_engine()
        await edit(h, sent, parent=first.id)
        assert len(h.sim.uploads) == 1 and h.sim.requests["refresh"] == 0


async def test_source_urls_refused_at_submit_are_sent_inline_once(tmp_path):
    sent = source("maroon")
    refusal = json.dumps(
        {"status": 400, "errors": {"steps[0].input.images[0]": ["the image cannot be loaded"]}}
    ).encode()
    async with harness(tmp_path) as h:
        await h.grant(1000)
        h.sim.fault(400, route="submit", body=refusal)
        job = await edit(h, sent)
        [url] = sent_images(h)  # the refused submit created nothing upstream
        assert url.startswith("data:image/png;base64,")
        assert h.sim.requests["submit"] == 2 and job.charged == 13


async def test_a_refusal_of_something_else_still_fails_the_job_uncharged(tmp_path):
    refusal = json.dumps({"status": 400, "errors": {"steps[0].input.prompt": ["too long"]}})
    async with harness(tmp_path) as h:
        await h.grant(1000)
        h.sim.fault(400, route="submit", body=refusal.encode())
        job = await h.engine.submit(edit_request(source()))
        await h.settle_all()
        failed = await h.job(job.id)
        assert failed.status is JobStatus.FAILED and failed.charged == 0
        assert h.sim.requests["submit"] == 1 and await h.available() == 1000


async def test_a_proxy_refusing_the_inline_retry_fails_the_job_at_once(tmp_path):
    """The orchestrator refuses the source URLs outright (nothing made), and a proxy then
    refuses the inline body as too large (413): nothing exists upstream, so the job fails at
    once, uncharged, instead of looking for a workflow until its deadline."""
    refusal = json.dumps(
        {"status": 400, "errors": {"steps[0].input.images[0]": ["the image cannot be loaded"]}}
    ).encode()
    async with harness(tmp_path) as h:
        await h.grant(1000)
        h.sim.fault(400, route="submit", body=refusal)
        h.sim.fault(413, route="submit", body=b"<html>413 Request Entity Too Large</html>")
        job = await h.engine.submit(edit_request(source()))
        await h.settle_all()
        failed = await h.job(job.id)
        assert failed.status is JobStatus.FAILED and failed.charged == 0
        assert "(413)" in (failed.error or "") and await h.available() == 1000


@pytest.mark.parametrize("whatif", [False, True])
async def test_an_upload_answered_without_a_url_sends_the_source_inline(tmp_path, caplog, whatif):
    """The blob store answers an upload 200 but with no URL to name it by: the source goes
    inline, as when the upload is refused (with civitai.whatif on, its price check too),
    instead of an error escaping the admission."""
    from bot.engine.engine import EngineSettings
    from bot.engine.follow import LongPoll

    sent = source()
    answer = json.dumps({"type": "image", "id": "b1", "available": True}).encode()
    settings = EngineSettings(policy=LongPoll(60), retry_base=0.01, retry_cap=0.05, whatif=whatif)
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(1000)
        h.sim.fault(200, route="upload", body=answer, times=10)
        job = await edit(h, sent)
        [url] = sent_images(h)
        assert url.startswith("data:image/png;base64,") and job.charged == 13
    assert not [r for r in caplog.records if r.exc_info]
