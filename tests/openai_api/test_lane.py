"""The OpenAI lane under the real engine, against the OpenAI simulator over loopback HTTP:
streamed create and edit with previews, the price held and charged, usage kept, every way a
call can end, and the `user` hash."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace

import pytest
from PIL import Image

from bot.catalog import Model, Operation, RequestOptions
from bot.config import Settings
from bot.engine.parts import EngineSettings
from bot.engine.requests import JobRequest, Refusal, Requester
from bot.openai_api import lane as openai_lane
from bot.openai_api.identity import user_hash
from bot.openai_api.service import SALT_KEY
from bot.openai_api.simulator import OpenAISimulator
from bot.services import build_services
from bot.store import audit, results
from bot.store import db as dbmod
from bot.store.db import StoreBusy
from bot.store.jobs import JobStatus, NewJob, SourceImage
from tests.engine.harness import CHANNEL, GUILD, MEMBER, MemoryPublisher
from tests.openai_api.conftest import png
from tests.openai_api.lane_harness import lane_harness
from tests.store.read_only import write_locked

pytestmark = pytest.mark.timeout(60)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def test_a_streamed_create_shows_previews_then_delivers_and_charges_the_table_price(
    tmp_path,
):
    async with lane_harness(tmp_path, partial_images=2) as h:
        await h.grant(1000)
        await h.engine.start()
        job = await h.run(h.request())  # gpt-image-2 medium 1536x1024
        assert job.status.value == "done", job.error
        assert job.estimate == 65 and job.hold_amount == 65 and job.charged == 65
        assert await h.available() == 1000 - 65
        # Two previews reached the publisher, both before the result was posted.
        previews = [p for p in h.publisher.previews if p[0] == job.id]
        assert len(previews) == 2
        [(posted_id, images)] = h.publisher.posts
        assert posted_id == job.id and len(images) == 1
        assert images[0].mime == "image/jpeg"
        # The request as the endpoint saw it: streamed, with every field a GPT model needs.
        [received] = h.sim.received
        fields = received.fields
        assert received.route == "generations"
        assert fields["stream"] is True and fields["partial_images"] == 2
        assert fields["size"] == "1536x1024" and fields["quality"] == "medium"
        assert fields["n"] == 1 and fields["output_format"] == "jpeg"
        # Usage (previews' extra tokens included) is kept with the job and audited.
        assert job.usage is not None
        assert job.usage["output_tokens"] == 1568 + 2 * 100
        [event] = await h.audit("upstream.usage")
        assert event.target == job.id and event.details["usage"] == job.usage
        assert event.details["charged"] == 65 and event.details["lane"] == "openai"
        # The in-band images are stored with the job (a restart could post them).
        stored = await results.load(h.services.db, job.id)
        assert [r.data for r in stored] == [images[0].data]


async def test_the_user_is_a_salted_hash_stable_across_restarts_never_a_raw_id(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        await h.run(h.request())
        salt = await h.services.state.get(SALT_KEY)
        assert salt
        [received] = h.sim.received
        user = received.fields["user"]
        assert user == user_hash(salt, GUILD, MEMBER)
        assert str(MEMBER) not in user and str(GUILD) not in user
    async with lane_harness(tmp_path) as h:  # the same database: the same salt
        await h.engine.start()
        assert await h.services.state.get(SALT_KEY) == salt


async def test_a_configured_salt_is_used(tmp_path):
    async with lane_harness(tmp_path, user_salt="operator-salt") as h:
        await h.grant(1000)
        await h.engine.start()
        await h.run(h.request())
        [received] = h.sim.received
        assert received.fields["user"] == user_hash("operator-salt", GUILD, MEMBER)


async def test_a_streamed_edit_sends_each_source_and_the_mask_as_multipart(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        sources = (
            SourceImage("image", "image/png", 64, 64, png(64, 64)),
            SourceImage("image", "image/png", 64, 64, png(64, 64)),
            SourceImage("mask", "image/png", 64, 64, png(64, 64, alpha=True)),
        )
        request = h.request(
            "add a hat", model=Model.GPT_IMAGE_1, operation=Operation.EDIT, quality="low"
        )
        job = await h.run(replace(request, sources=sources))
        assert job.status.value == "done", job.error
        assert job.charged == 25
        [received] = h.sim.received
        assert received.route == "edits"
        assert [f.name for f in received.files] == ["image[]", "image[]", "mask"]
        assert received.fields["stream"] is True and received.fields["quality"] == "low"
        assert [p for p in h.publisher.previews if p[0] == job.id]


async def test_gpt_image_1_mini_is_offered_once_it_has_a_price(tmp_path):
    async with lane_harness(tmp_path) as h:
        with pytest.raises(Refusal) as caught:
            await h.engine.submit(h.request(model=Model.GPT_IMAGE_1_MINI, quality="low"))
        assert "has no Buzz price" in caught.value.message
    prices = {"gpt-image-1-mini": {"low": 5, "medium": 20, "high": 75}}
    async with lane_harness(tmp_path, prices=prices) as h:
        await h.grant(100)
        await h.engine.start()
        job = await h.run(h.request(model=Model.GPT_IMAGE_1_MINI, quality="low", quantity=2))
        assert job.status.value == "done" and job.charged == 10
        assert len(h.publisher.posts[0][1]) == 2
        assert h.sim.received[0].fields["model"] == "gpt-image-1-mini"


# -- blocked, refused, faults -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "code"),
    [(Model.GPT_IMAGE_2, "moderation_blocked"), (Model.DALL_E_3, "content_policy_violation")],
)
async def test_a_block_goes_to_review_and_charges_nothing(tmp_path, model, code):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script(code)
        job = await h.run(h.request(model=model))
        assert job.status.value == "blocked" and job.charged == 0
        assert await h.available() == 1000
        [(item, _)] = h.reviews.items
        assert item.kind == "blocked" and item.job_id == job.id
        assert code in (item.reason or "")
        assert not h.publisher.posts


@pytest.mark.parametrize(
    ("outcome", "key"),
    [
        ("unauthorized", "openai-auth"),
        ("forbidden", "openai-auth"),
        ("insufficient_quota", "openai-quota"),
    ],
)
async def test_operator_problems_alert_the_operator_and_refund_the_member(tmp_path, outcome, key):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script(outcome)
        job = await h.run(h.request())
        assert job.status.value == "failed" and job.charged == 0
        assert "operator has been told" in (job.error or "")
        assert await h.available() == 1000
        assert [k for k, _ in h.alerts.alerts] == [key]
        assert h.sim.api_key not in repr(h.alerts.alerts) + (job.error or "")


async def test_a_model_the_endpoint_no_longer_serves_is_switched_off_and_stays_off(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("model_not_found")
        job = await h.run(h.request())
        assert job.status.value == "failed" and job.charged == 0
        assert "gpt-image-2 is no longer available" in (job.error or "")
        [(key, message)] = h.alerts.alerts
        assert key == "openai-model:gpt-image-2" and "openai-models --enable" in message
        with pytest.raises(Refusal) as caught:
            await h.engine.submit(h.request())
        assert "gpt-image-2 is switched off" in caught.value.message
        other = await h.run(h.request(model=Model.GPT_IMAGE_1, quality="low"))
        assert other.status.value == "done"
    async with lane_harness(tmp_path) as h:  # after a restart: still off
        with pytest.raises(Refusal):
            await h.engine.submit(h.request())
        assert await h.services.openai.switch.enable("gpt-image-2")  # the operator's CLI
    async with lane_harness(tmp_path) as h:
        await h.engine.start()
        assert (await h.run(h.request())).status.value == "done"


@pytest.mark.parametrize(
    ("outcome", "options"),
    [
        ("rate_limited", {"retry_after": 0.05}),
        ("server_error", {"status": 502}),
        ("break", {"after_events": 1}),
    ],
)
async def test_passing_faults_are_retried_and_charged_once(tmp_path, outcome, options):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script(outcome, **options)
        job = await h.run(h.request())
        assert job.status.value == "done", job.error
        assert job.charged == 65 and await h.available() == 1000 - 65
        assert h.sim.requests["generations"] == 2
        assert len(h.publisher.posts) == 1


async def test_a_try_that_streamed_previews_then_broke_is_audited_when_the_retry_succeeds(
    tmp_path,
):
    """The broken try ran, and was billed, upstream: the member pays once for the image the
    retry made, and the operator can match the second call on the bill."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("rate_limited", retry_after=0.05)  # surely not run: nothing to match
        h.sim.script("break", after_events=1)  # one preview, then the connection drops
        job = await h.run(h.request())
        assert job.status.value == "done", job.error
        assert job.charged == 65 and await h.available() == 1000 - 65
        assert h.sim.requests["generations"] == 3
        [lost] = await h.audit("upstream.call_lost")
        assert lost.target == job.id and "stream broke" in lost.details["detail"]


@pytest.mark.parametrize(
    ("refusal", "status"), [("unauthorized", "failed"), ("moderation_blocked", "blocked")]
)
async def test_a_try_that_streamed_previews_then_broke_is_audited_when_the_retry_is_refused(
    tmp_path, refusal, status
):
    """The key revoked (or the prompt blocked) on the retry: the broken try before it still
    ran and was billed upstream, and the member still pays nothing."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("break", after_events=1)
        h.sim.script(refusal)
        job = await h.run(h.request())
        assert job.status.value == status and job.charged == 0
        assert await h.available() == 1000
        assert h.sim.requests["generations"] == 2
        [lost] = await h.audit("upstream.call_lost")
        assert lost.target == job.id and "stream broke" in lost.details["detail"]


async def test_an_endpoint_that_keeps_failing_ends_the_job_uncharged_after_bounded_rounds(
    tmp_path,
):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("server_error", times=100)
        job = await h.run(h.request())
        assert job.status.value == "failed" and job.charged == 0
        assert "kept failing" in (job.error or "")
        assert await h.available() == 1000
        # 5 rounds of the client's 1 + 2 tries; each may have run upstream: all audited.
        assert h.sim.requests["generations"] == 15
        lost = await h.audit("upstream.call_lost")
        assert len(lost) == 5 and {e.details["reason"] for e in lost} == {"failed"}


async def test_an_endpoint_that_ignores_stream_answers_json_and_it_still_works(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("no_stream")
        job = await h.run(h.request())
        assert job.status.value == "done" and job.charged == 65
        assert not h.publisher.previews
        assert job.usage is not None and job.usage["output_tokens"] == 1568


async def test_dall_e_3_is_not_streamed_and_answers_base64(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        job = await h.run(h.request(model=Model.DALL_E_3))
        assert job.status.value == "done" and job.charged == 300
        fields = h.sim.received[0].fields
        assert "stream" not in fields and fields["response_format"] == "b64_json"
        assert job.usage is None


async def test_an_error_event_mid_stream_is_a_refusal_naming_nothing_secret(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("error_event", code="invalid_value")
        job = await h.run(h.request())
        assert job.status.value == "failed" and job.charged == 0
        assert "refused the request" in (job.error or "")


@pytest.mark.parametrize(
    ("code", "status", "refused_at_once"),
    [
        ("invalid_value", "failed", "proxy_echo"),
        ("moderation_blocked", "blocked", "moderation_blocked"),
    ],
)
async def test_a_refusal_after_previews_streamed_is_audited_as_a_call_that_ran(
    tmp_path, code, status, refused_at_once
):
    """Previews came before the error event: the call ran (and was billed) upstream, as when
    a stream breaks after them. The member pays nothing; the operator can match the bill."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("error_event", code=code)
        job = await h.run(h.request())
        assert job.status.value == status and job.charged == 0
        assert await h.available() == 1000
        [lost] = await h.audit("upstream.call_lost")
        assert lost.target == job.id
        assert lost.details["reason"] == ("blocked" if status == "blocked" else "refused")
        # Refused before any output (a plain 400): nothing ran, nothing to match.
        h.sim.script(refused_at_once)
        other = await h.run(h.request())
        assert other.status.value == status
        assert [e.target for e in await h.audit("upstream.call_lost")] == [job.id]


async def test_an_unusable_answer_fails_uncharged_and_is_audited(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("bad_base64")
        job = await h.run(h.request())
        assert job.status.value == "failed" and job.charged == 0
        [lost] = await h.audit("upstream.call_lost")
        assert lost.details["reason"] == "unusable" and lost.target == job.id


@pytest.mark.parametrize("model", [Model.GPT_IMAGE_2, Model.DALL_E_2])  # streamed, JSON
async def test_one_unusable_image_of_two_loses_only_itself(tmp_path, model):
    """The endpoint made (and billed) both: the good one is posted, charged as one image; the
    other is audited for the operator, not charged, and the call is not made again."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("bad_last_image")
        job = await h.run(h.request(model=model, quantity=2))
        assert job.status.value == "done", job.error
        assert job.charged == job.estimate // 2 > 0
        assert await h.available() == 1000 - job.charged
        assert h.sim.requests["generations"] == 1
        [(_, images)] = h.publisher.posts
        assert len(images) == 1
        [lost] = await h.audit("upstream.call_lost")
        assert lost.details["reason"] == "unusable" and "image 2" in lost.details["detail"]


@pytest.mark.parametrize(
    ("allowed", "restricted", "sent"),
    [(True, True, "low"), (True, False, None), (False, True, None)],
)
async def test_moderation_low_only_in_age_restricted_channels_when_allowed(
    tmp_path, allowed, restricted, sent
):
    async with lane_harness(tmp_path, moderation_low_allowed=allowed) as h:
        await h.grant(1000)
        await h.engine.start()
        await h.run(h.request(age_restricted=restricted))
        assert h.sim.received[0].fields.get("moderation") == sent


async def test_an_edit_in_an_age_restricted_channel_is_not_sent_moderation(tmp_path):
    """`moderation` is a field of images/generations only: sent on an edit, the endpoint
    refuses it as an unknown parameter, so every edit in such a channel failed."""
    async with lane_harness(tmp_path, moderation_low_allowed=True) as h:
        await h.grant(1000)
        await h.engine.start()
        source = SourceImage("image", "image/png", 64, 64, png(64, 64))
        request = h.request(
            "add a hat",
            model=Model.GPT_IMAGE_1,
            operation=Operation.EDIT,
            quality="low",
            age_restricted=True,
        )
        job = await h.run(replace(request, sources=(source,)))
        assert job.status.value == "done", job.error
        assert job.charged == 25
        [received] = h.sim.received
        assert received.route == "edits" and "moderation" not in received.fields


async def test_dall_e_in_an_age_restricted_channel_is_not_sent_moderation(tmp_path):
    """`moderation` is a GPT image models' field: dall-e-3 refuses it as unknown, so every
    dall-e-3 request in an age-restricted channel failed once an admin allowed `low`."""
    async with lane_harness(tmp_path, moderation_low_allowed=True) as h:
        await h.grant(1000)
        await h.engine.start()
        job = await h.run(h.request(model=Model.DALL_E_3, age_restricted=True))
        assert job.status.value == "done", job.error
        assert job.charged == 300
        assert "moderation" not in h.sim.received[0].fields


# -- cancel and restart while the call runs ---------------------------------------------------


async def until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_cancel_while_the_call_runs_stops_it_and_charges_nothing(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.hold_final_images()  # the call runs until the test says otherwise
        job = await h.engine.submit(h.request())
        await until(lambda: h.publisher.previews)
        await h.engine.cancel(job.id, Requester(GUILD, CHANNEL, MEMBER))
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status.value == "canceled" and job.charged == 0
        assert await h.available() == 1000
        [lost] = await h.audit("upstream.call_lost")
        assert lost.details["reason"] == "canceled"


async def test_a_failed_read_of_the_job_while_the_call_runs_does_not_cut_it_short(
    tmp_path, monkeypatch
):
    """The lane reads the job now and then to see a cancel. A read refused by a locked
    database (a backup, an operator's shell) must not drop the call under way: it is paid
    for upstream and would be made, and paid, again, with nothing in the audit log."""
    monkeypatch.setattr(openai_lane, "WATCH_EVERY", 0.01)
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        gate = h.sim.hold_final_images()
        job = await h.engine.submit(h.request())
        await until(lambda: h.publisher.previews)
        jobs, refused = h.services.jobs, []
        read = jobs.job

        async def locked(job_id):
            if not gate.is_set():
                refused.append(job_id)
                raise StoreBusy("the database is busy (another process holds its write lock)")
            return await read(job_id)

        monkeypatch.setattr(jobs, "job", locked)
        await until(lambda: len(refused) >= 2)
        gate.set()
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status.value == "done" and job.charged == 65
        assert h.sim.requests["generations"] == 1
        assert len(h.publisher.posts) == 1
        assert await h.audit("upstream.call_lost") == []


async def test_a_failed_read_of_the_job_by_its_task_does_not_strand_the_job(
    tmp_path, monkeypatch, caplog
):
    """The job's task reads the job before each step. A read refused for now (a locked or
    failing database) killed the task with a traceback, leaving the job queued, its member
    waiting, until the minute-long sweep for jobs without a task found it."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        jobs, refused = h.services.jobs, []
        read = jobs.job

        async def locked_once(job_id):
            task = asyncio.current_task()
            if not refused and task is not None and task.get_name().startswith("job-"):
                refused.append(job_id)
                raise StoreBusy("the database is busy (another process holds its write lock)")
            return await read(job_id)

        monkeypatch.setattr(jobs, "job", locked_once)
        job = await h.run(h.request())
        assert refused == [job.id]
        assert job.status.value == "done" and job.charged == 65
        assert h.sim.requests["generations"] == 1 and len(h.publisher.posts) == 1
    assert not [r for r in caplog.records if r.exc_info]  # an expected fault: no traceback


async def test_a_restart_mid_call_calls_again_once_and_charges_once(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        gate = h.sim.hold_final_images()
        job = await h.engine.submit(h.request())
        await until(lambda: h.publisher.previews)
        await h.restart_engine()  # the old call dies with the old engine
        await until(lambda: h.sim.requests["generations"] == 2)
        gate.set()
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status.value == "done" and job.charged == 65
        assert await h.available() == 1000 - 65
        assert len(h.publisher.posts) == 1
        [lost] = await h.audit("upstream.call_lost")
        assert lost.target == job.id and lost.details["reason"] == "restart"
        assert lost.details["call_started_at"]


async def test_an_orderly_stop_lets_the_call_under_way_finish_and_settle(tmp_path):
    """SIGTERM (engine.stop) while a call streams: the call is not cut short (it would be paid
    for upstream and made again); it finishes, its result is stored and charged, and the next
    start posts it, with no second call."""
    settings = EngineSettings(retry_base=0.01, retry_cap=0.05, drain=30.0)
    async with lane_harness(tmp_path, engine_settings=settings) as h:
        await h.grant(1000)
        await h.engine.start()
        gate = h.sim.hold_final_images()
        job = await h.engine.submit(h.request())
        await until(lambda: h.publisher.previews)
        stopping = asyncio.create_task(h.engine.stop())
        await asyncio.sleep(0.3)
        assert not stopping.done()  # waiting for the call
        gate.set()
        async with asyncio.timeout(10):
            await stopping
        stored = await h.job(job.id)
        assert stored.status.value in ("delivering", "done") and stored.charged == 65
        await h.restart_engine()
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status.value == "done" and job.charged == 65
        assert await h.available() == 1000 - 65
        assert h.sim.requests["generations"] == 1
        assert len(h.publisher.posts) == 1
        assert await h.audit("upstream.call_lost") == []


async def test_an_orderly_stop_while_the_database_is_locked_still_settles_the_finished_call(
    tmp_path, monkeypatch, caplog
):
    """SIGTERM while a call streams, and the call ends just as an operator's sqlite3 shell holds
    the write lock: within the drain time the stop keeps trying to settle it, so the images
    already paid for are kept and charged once, not lost and made (and paid) again after the
    restart."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    settings = EngineSettings(retry_base=0.01, retry_cap=0.05, drain=30.0)
    async with lane_harness(tmp_path, engine_settings=settings) as h:
        await h.grant(1000)
        await h.engine.start()
        gate = h.sim.hold_final_images()
        job = await h.engine.submit(h.request())
        await until(lambda: h.publisher.previews)
        with write_locked(tmp_path / "bot.sqlite3"):
            stopping = asyncio.create_task(h.engine.stop())
            gate.set()
            await until(lambda: any("database is busy" in r.getMessage() for r in caplog.records))
        async with asyncio.timeout(10):
            await stopping
        stored = await h.job(job.id)
        assert stored.status.value in ("delivering", "done") and stored.charged == 65
        await h.restart_engine()
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status.value == "done" and job.charged == 65
        assert await h.available() == 1000 - 65
        assert h.sim.requests["generations"] == 1
        assert len(h.publisher.posts) == 1


async def test_an_orderly_stop_waits_for_a_call_only_so_long(tmp_path):
    settings = EngineSettings(retry_base=0.01, retry_cap=0.05, drain=0.5)
    async with lane_harness(tmp_path, engine_settings=settings) as h:
        await h.grant(1000)
        await h.engine.start()
        gate = h.sim.hold_final_images()  # never released before the stop
        job = await h.engine.submit(h.request())
        await until(lambda: h.publisher.previews)
        async with asyncio.timeout(10):
            await h.engine.stop()
        assert (await h.job(job.id)).status.value in ("submitted", "running")
        gate.set()
        await h.restart_engine()
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status.value == "done" and job.charged == 65
        assert h.sim.requests["generations"] == 2
        [lost] = await h.audit("upstream.call_lost")
        assert lost.details["reason"] == "restart"


async def test_a_job_whose_call_is_lost_at_two_restarts_fails_uncharged(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        gate = h.sim.hold_final_images()
        job = await h.engine.submit(h.request())
        for made in (1, 2):  # each time: the call is running, and the bot stops
            await until(
                lambda made=made: (
                    h.sim.requests["generations"] == made and len(h.publisher.previews) >= made
                )
            )
            await h.restart_engine()
        await h.settle_all()
        gate.set()
        job = await h.job(job.id)
        assert job.status.value == "failed" and job.charged == 0
        assert "interrupted twice" in (job.error or "")
        assert await h.available() == 1000
        assert [e.details["reason"] for e in await h.audit("upstream.call_lost")] == [
            "restart",
            "restart",
        ]
        assert h.sim.requests["generations"] == 2


async def test_without_a_key_the_lane_runs_on_its_own_simulator(tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "BOT_PROVIDER", "CIVITAI_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(
        provider="openai",
        database={"path": tmp_path / "bot.sqlite3"},
        simulator={"speed": 0.001},
        defaults={"per_member_concurrency": 5},
    )
    services = await build_services(settings)
    publisher = MemoryPublisher()
    engine = services.engine(publisher)
    try:
        assert services.provider == "openai" and services.simulated
        assert services.simulator is None  # not the orchestrator's
        openai = services.openai
        assert openai is not None and openai.simulator is not None
        assert openai.base_url == openai.simulator.base_url
        await services.db.write(
            services.ledger.grant_in, GUILD, MEMBER, 500, actor_id=None, reason="test"
        )
        await engine.start()
        request = JobRequest(
            Requester(GUILD, CHANNEL, MEMBER),
            Model.GPT_IMAGE_1_5,
            Operation.CREATE,
            RequestOptions(prompt="a small boat", quality="low"),
            confirmed=True,
        )
        job = await engine.submit(request)
        async with asyncio.timeout(30):
            await engine.wait_idle()
        done = await services.jobs.job(job.id)
        assert done is not None and done.status.value == "done" and done.simulated
        assert done.charged == 25 and publisher.previews
    finally:
        await engine.stop()
        await services.aclose()


async def test_a_job_admitted_for_the_civitai_lane_ends_uncharged_after_a_switch(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        services = h.services
        job_id = "jcivitai0001"

        def admit(tx):
            services.jobs.insert_in(
                tx,
                NewJob(
                    id=job_id,
                    guild_id=GUILD,
                    channel_id=CHANNEL,
                    member_id=MEMBER,
                    model="gpt-image-2",
                    operation="createImage",
                    options={"prompt": "old"},
                    step={"$type": "imageGen", "input": {"prompt": "old"}},
                    estimate=78,
                    status=JobStatus.QUEUED,
                ),
            )
            services.ledger.place_hold_in(tx, GUILD, MEMBER, job_id, 78)

        await services.db.write(admit)
        await h.engine.start()
        await h.settle_all()
        job = await h.job(job_id)
        assert job.status.value == "failed" and job.charged == 0
        assert "another image service" in (job.error or "")
        assert await h.available() == 1000 and not h.sim.received


async def test_a_wrong_base_url_is_the_operators_problem(tmp_path):
    sim = OpenAISimulator(api_key="sk-sim-key-wrong-url-0000", speed=0.001)
    await sim.start()
    try:
        async with lane_harness(tmp_path, sim=sim, base_url=sim.base_url + "/nowhere") as h:
            await h.grant(1000)
            await h.engine.start()
            job = await h.run(h.request())
            assert job.status.value == "failed" and job.charged == 0
            assert [k for k, _ in h.alerts.alerts] == ["openai-endpoint"]
            assert "OPENAI_BASE_URL" in h.alerts.alerts[0][1]
    finally:
        await sim.stop()


async def test_no_moderation_low_in_an_age_restricted_channel_an_admin_lowered(tmp_path):
    """The channel's level decides, not only Discord's flag: lowered to PG-13, no `low`."""
    async with lane_harness(tmp_path, moderation_low_allowed=True) as h:
        await h.grant(1000)
        await h.services.safety.set_level(
            GUILD, "pg13", channel_id=CHANNEL, age_restricted=True, actor_id=1
        )
        await h.engine.start()
        await h.run(h.request(age_restricted=True))
        assert "moderation" not in h.sim.received[0].fields


async def test_a_settlement_the_database_refuses_for_a_while_is_made_later_not_called_again(
    tmp_path, monkeypatch, caplog
):
    """Another process holds the database's write lock past the busy timeout just as a call
    finishes (an operator's sqlite3 shell, a backup tool; a full disk is the same): the
    images already received are settled once the lock is gone; the endpoint is not called,
    and paid, again."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        gate = h.sim.hold_final_images()
        job = await h.engine.submit(h.request())
        await until(lambda: h.publisher.previews)
        with write_locked(tmp_path / "bot.sqlite3"):
            gate.set()
            await until(lambda: any("database is busy" in r.getMessage() for r in caplog.records))
        await h.settle_all(30)
        job = await h.job(job.id)
        assert job.status.value == "done" and job.charged == 65
        assert h.sim.requests["generations"] == 1
        assert await h.audit("upstream.call_lost") == []
        assert len(h.publisher.posts) == 1
    assert not [r for r in caplog.records if r.exc_info]  # an expected fault: no traceback


async def test_a_busy_database_while_auditing_an_unusable_image_does_not_call_again(
    tmp_path, monkeypatch
):
    """The endpoint made (and billed) two images, one unusable. Recording that one for the
    operator meets a locked database: the call is not made again (it would be paid again);
    the good image is posted and charged, the lost one is in the log instead."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        db = h.services.db
        write, refused = db.write, []

        async def busy_for_the_audit(fn, *args, **kwargs):
            if fn is audit.record and not refused:
                refused.append(args)
                raise StoreBusy("database is locked")
            return await write(fn, *args, **kwargs)

        monkeypatch.setattr(db, "write", busy_for_the_audit)
        h.sim.script("bad_last_image")
        job = await h.run(h.request(quantity=2))
        assert refused and h.sim.requests["generations"] == 1
        assert job.status.value == "done", job.error
        assert job.charged == job.estimate // 2 > 0


async def test_pre_moderation_left_on_without_an_orchestrator_alerts_the_operator(tmp_path):
    """A server switched AI pre-moderation on while the bot ran on Civitai; the operator then
    moved to the OpenAI lane without a CIVITAI_TOKEN. No check can be made: with the default
    fallback every request waits for the moderators. The operator must be told, once."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.services.safety.set_premoderation(GUILD, True, actor_id=1)
        await h.engine.start()
        first = await h.run(h.request("a lighthouse"))
        second = await h.run(h.request("a harbour"))
        assert first.status is second.status is JobStatus.HELD
        [(key, message)] = h.alerts.alerts
        assert key == "premoderation" and "CIVITAI_TOKEN" in message
        assert "/settings premoderation enabled:False" in message


@pytest.mark.parametrize(("level", "partials"), [("pg", 0), ("pg13", 2)])
async def test_no_previews_are_asked_for_in_a_channel_below_pg13(tmp_path, level, partials):
    """Previews are not rated or moderated by the bot: in a channel an admin set to PG they
    were streamed onto the status message all the same. There the call asks for none (and
    none reaches the status message); from PG-13 up they are shown as before."""
    async with lane_harness(tmp_path, partial_images=2) as h:
        await h.grant(1000)
        await h.services.safety.set_level(
            GUILD, level, channel_id=CHANNEL, age_restricted=False, actor_id=1
        )
        await h.engine.start()
        job = await h.run(h.request())
        assert job.status.value == "done", job.error
        assert job.charged == 65
        [received] = h.sim.received
        assert received.fields["partial_images"] == partials
        assert len([p for p in h.publisher.previews if p[0] == job.id]) == partials
