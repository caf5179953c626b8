"""Faults at every boundary the engine owns, against the simulator over HTTP.

For each fault: every job ends, the ledger charges exactly what the simulator charged, and
every finished image is posted exactly once or the member is told exactly what is missing.
Expected faults are logged as warnings, never as tracebacks.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from PIL import Image

from bot.civitai.simulator import Outcome, Simulator
from bot.config import Settings
from bot.engine.engine import EngineSettings
from bot.engine.follow import LongPoll, Schedule
from bot.engine.publisher import PostFailed
from bot.engine.requests import Requester
from bot.engine.results import missing_share
from bot.review import Action, ReviewService
from bot.services import build_services
from bot.store.jobs import JobRecord, JobStatus
from tests.engine.harness import CHANNEL, GUILD, MEMBER, Harness, harness
from tests.review.helpers import Clock
from tests.store.read_only import unwritable

J = JobStatus
GRANT = 5000
PRICE = 78  # gpt-image-2 medium 1024x1024


def quick(**changes: object) -> EngineSettings:
    base = EngineSettings(policy=LongPoll(60), retry_base=0.01, retry_cap=0.05)
    return replace(base, **changes)


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture):
    """An expected fault is one warning line; a traceback in these tests would be a bug."""
    caplog.set_level(logging.WARNING)
    yield
    # The test's own phase: after a yield, caplog.records holds only the teardown's records.
    records = caplog.get_records("setup") + caplog.get_records("call")
    traced = [r for r in records if r.exc_info and r.name.startswith("bot")]
    assert not traced, [r.getMessage() for r in traced]


async def wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def books_balance(h: Harness, *jobs: JobRecord) -> list[JobRecord]:
    """Every job ended, and the member paid exactly what the orchestrator charged."""
    ended = [await h.job(j.id) for j in jobs]
    assert all(j.final for j in ended), [(j.id, j.status) for j in ended]
    for job in ended:
        hold = await h.ledger.hold(job.id)
        assert hold is not None and hold.settled_at is not None
    charged = sum(j.charged or 0 for j in ended)
    assert charged == h.sim.charged_total()
    assert await h.available() == GRANT - charged
    return ended


def posted(h: Harness, job_id: str) -> list[int]:
    """How many images of the job each post carried (one entry per post)."""
    return [len(images) for jid, images in h.publisher.posts if jid == job_id]


async def test_a_lost_submit_then_503s_then_cancel_still_settles_what_upstream_charged(tmp_path):
    """The issue's case: the first submit's answer is lost after the orchestrator created the
    workflow, every retry gets 503, and the member cancels while the job is still queued.
    The bot must find the workflow by its externalId, stop it and charge what it cost."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=400))  # 2 s here: still running when it is found
        h.sim.lose_answer(route="submit")
        h.sim.fault(503, route="submit", seconds=0.6)
        job = await h.engine.submit(h.request(quality="medium"))
        await asyncio.sleep(0.3)  # several rounds of 503s, each "not accepted" on its own
        assert (await h.job(job.id)).status is J.QUEUED
        await h.engine.cancel(job.id, Requester(GUILD, CHANNEL, MEMBER))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.CANCELED
        [workflow] = h.sim.workflows.values()  # one workflow: the retries found the same one
        assert workflow.canceled_at is not None, "it was stopped upstream"
        assert ended.charged == PRICE  # canceled while processing: the orchestrator kept it
        assert ended.workflow_id == workflow.id
        assert h.publisher.posts == []


async def test_a_lost_submit_past_the_deadline_is_recovered_and_settled(tmp_path):
    settings = quick(deadline=timedelta(seconds=0.3))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=400))
        h.sim.lose_answer(route="submit")
        h.sim.fault(503, route="submit", seconds=0.5)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.EXPIRED and ended.workflow_id is not None
        [workflow] = h.sim.workflows.values()
        assert workflow.canceled_at is not None


async def test_a_job_ended_without_learning_whether_its_workflow_exists_tells_the_operator(
    tmp_path,
):
    """The first submit's answer is lost (the workflow was made) and the orchestrator then
    answers 503 past the deadline and its grace: the job ends uncharged, so a charge upstream
    would be missing from the ledger. The operator is told, with the externalId to look up."""
    settings = quick(deadline=timedelta(seconds=0.2), expire_grace=timedelta(seconds=0.2))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=400))
        h.sim.lose_answer(route="submit")
        h.sim.fault(503, route="submit", seconds=30)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is J.EXPIRED and ended.charged == 0
        assert len(h.sim.workflows) == 1  # it exists upstream, unknown to the ledger
        [(key, alert)] = h.alerts.alerts
        assert key == "unconfirmed" and f"externalId {job.id}" in alert


async def test_a_submit_refused_outright_and_canceled_charges_nothing(tmp_path):
    """The mirror case: no attempt could have been acted on (every answer a 503), so cancel
    ends the job at once, uncharged, without creating anything upstream."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(503, route="submit", seconds=5)
        job = await h.engine.submit(h.request(quality="medium"))
        await asyncio.sleep(0.2)
        await h.engine.cancel(job.id, Requester(GUILD, CHANNEL, MEMBER))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.CANCELED and ended.charged == 0
        assert h.sim.workflows == {}


async def test_a_blob_store_down_for_a_while_does_not_lose_a_paid_image(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(503, route="blob", seconds=1.0)  # "a minute" at this test's scale
        job = await h.engine.submit(h.request(quality="medium", quantity=2))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and done.charged == 2 * PRICE
        assert posted(h, job.id) == [2]
        assert h.sim.requests["blob"] > 2 * 4, "it kept trying through the outage"


async def test_a_200_that_is_not_an_image_is_fetched_again(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(200, route="blob", body=b"<html><h1>502 Bad Gateway</h1></html>", times=3)
        job = await h.engine.submit(h.request(quality="medium", format="png"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE
        [(_, [image])] = h.publisher.posts
        assert image.mime == "image/png" and image.data.startswith(b"\x89PNG")
        assert (image.width, image.height) == (1024, 1024)


async def test_a_truncated_image_is_fetched_again(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40  # a PNG signature and nothing real
        h.sim.fault(200, route="blob", body=broken, times=2)
        job = await h.engine.submit(h.request(quality="medium", format="png"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]


@pytest.mark.parametrize("status", [520, 501, 400, 409])
async def test_an_unexpected_blob_store_answer_is_fetched_again(tmp_path, status):
    """A CDN's 52x, or any answer the blob calls do not name, is one failed fetch: retried
    until the delivery deadline like the rest, never a traceback."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(status, route="blob", times=2)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]


async def test_a_blob_store_answering_520_past_the_deadline_is_told_not_retried_for_ever(
    tmp_path,
):
    settings = quick(delivery_deadline=timedelta(seconds=0.5))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.sim.fault(520, route="blob", seconds=30)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.FAILED and h.publisher.posts == []
        [(item, _)] = h.reviews.items
        assert item.kind == "undelivered"
        assert item.reason == "none of the 1 image(s) could be fetched from the image service"


async def test_a_cut_short_jpeg_is_fetched_again_not_posted_broken(tmp_path):
    """A JPEG's header and first scans pass a structure check: the store ending the body
    early (a close-delimited answer cut off) must not post a half-grey image, charged."""
    whole = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(whole, "JPEG")
    cut = whole.getvalue()[: len(whole.getvalue()) // 2]
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(200, route="blob", body=cut, times=2)
        job = await h.engine.submit(h.request(quality="medium", format="jpeg"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE
        [(_, [image])] = h.publisher.posts
        assert image.data != cut
        with Image.open(io.BytesIO(image.data)) as posted_image:
            posted_image.load()  # the whole image decodes


# A step output of the wrong shape for its type (read lazily, by the step's own view).
WRONG_OUTPUT = (
    b'{"id": "wf_x", "status": "succeeded", "steps": [{"$type": "imageUpscaler", "name": "0",'
    b' "status": "succeeded", "output": {"blob": {"url": 5}}}]}'
)


@pytest.mark.parametrize("route", ["submit", "get"])
@pytest.mark.parametrize(
    "body", [b'{"id": "wf_x", "status": ', b"{}", b'{"status": "processing"}', WRONG_OUTPUT]
)
async def test_malformed_json_from_the_orchestrator_is_retried(tmp_path, route, body):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(200, route=route, body=body, times=2)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]
        assert len(h.sim.workflows) == 1


# A transaction amount below the schema's minimum of 0: read as it is, this credit of -500
# would charge a failed job 578 Buzz (a negative debit would lower a charge).
NEGATIVE_AMOUNT = (
    b'{"id": "wf_x", "status": "failed", "transactions": {"list": ['
    b'{"type": "debit", "amount": 78, "accountType": "yellow"},'
    b' {"type": "credit", "amount": -500, "accountType": "yellow"}]}}'
)


@pytest.mark.parametrize("route", ["submit", "get"])
async def test_a_negative_transaction_amount_is_a_malformed_answer(tmp_path, route):
    """An answer whose transactions break the schema is not settled from: it is asked for
    again, and the member pays what the orchestrator really charged."""
    async with harness(tmp_path, settings=quick(policy=LongPoll(0))) as h:
        await h.grant(GRANT)
        h.sim.fault(200, route=route, body=NEGATIVE_AMOUNT, times=2)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and done.charged == PRICE
        assert posted(h, job.id) == [1]


@pytest.mark.parametrize("route", ["submit", "get"])
@pytest.mark.parametrize("status", [520, 524, 501])
async def test_any_5xx_from_in_front_of_the_orchestrator_is_retried(tmp_path, route, status):
    """A CDN in front of the API answers 52x (524: the origin took too long, as a long-poll
    may): retried like a 503, never a traceback, the workflow made once."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(status, route=route, times=2)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]
        assert len(h.sim.workflows) == 1


@pytest.mark.parametrize("status", [413, 409, 422])
async def test_a_submit_refused_with_an_unlisted_4xx_ends_uncharged_and_says_so(tmp_path, status):
    """A proxy's 413 (a body with inline sources over its limit), or any 4xx the API does not
    list, is a refusal: the job ends, uncharged, saying what was answered."""
    async with harness(tmp_path, settings=quick(deadline=timedelta(seconds=1))) as h:
        await h.grant(GRANT)
        h.sim.fault(status, route="submit", seconds=30)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.FAILED and ended.charged == 0
        assert h.publisher.messages(job.id)[-1] == (
            f"the orchestrator refused it ({status}); nothing was charged"
        )
        assert h.sim.workflows == {}


async def test_a_follow_refused_with_an_unlisted_4xx_still_ends_at_the_deadline(tmp_path):
    """Reading the workflow answers a 4xx the API does not list (a WAF's 400, a 410), for
    good: past the deadline and its grace the job is settled from the last report, as one
    whose workflow never ends, not retried for ever with a traceback each time."""
    settings = quick(deadline=timedelta(seconds=0.5), expire_grace=timedelta(seconds=0.5))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100_000))
        h.sim.fault(410, route="get", seconds=30)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.EXPIRED
        [workflow] = h.sim.workflows.values()
        assert workflow.canceled_at is not None


async def test_a_workflow_no_read_reaches_after_a_restart_past_its_grace_is_told_once(
    tmp_path, caplog
):
    """Resumed past its deadline and grace, a job whose every read is refused (a WAF's 410)
    has no report to settle from: its hold stays (the workflow may have charged), the operator
    is told once, and the reads back off instead of warning at the same pace for ever."""
    clock = Clock()
    async with harness(tmp_path, settings=quick(policy=LongPoll(0)), clock=clock) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100_000))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: h.sim.workflow_for(job.id) is not None)
        await h.engine.stop()
        h.sim.fault(410, route="get", seconds=30)
        clock.advance(hours=1)
        await h.restart_engine()

        await wait_for(lambda: len(refusal_waits(caplog)) >= 6)
        waits = refusal_waits(caplog)
        assert waits == sorted(waits) and waits[-1] >= 8 * waits[0], waits
        [(key, alert)] = h.alerts.alerts
        assert key == "unreadable" and job.id in alert and "held" in alert
        held = await h.job(job.id)
        assert not held.final and (await h.ledger.hold(job.id)).settled_at is None
        assert await h.available() == GRANT - PRICE


async def test_refused_reads_within_the_deadline_are_asked_again_at_the_usual_pace(
    tmp_path, caplog
):
    """A few minutes of a WAF's 410 while the job is well within its deadline: its reads are
    asked again every retry cap, not at a doubling wait (which would deliver the image up to
    15 minutes late, and overrun the deadline's cancel), and no operator alert is sent."""
    async with harness(tmp_path, settings=quick(policy=LongPoll(0))) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100_000))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: h.sim.workflow_for(job.id) is not None)
        h.sim.fault(410, route="get", seconds=30)

        await wait_for(lambda: len(refusal_waits(caplog)) >= 6)
        assert len(set(refusal_waits(caplog))) == 1, refusal_waits(caplog)
        assert h.alerts.alerts == []
        assert not (await h.job(job.id)).final


async def test_a_workflow_that_only_answers_5xx_past_its_grace_is_told_once(tmp_path):
    """The same with 500s for every read of it (past the client's retries, then again):
    nothing to settle from, so the hold stays, and the operator is told once, not never."""
    clock = Clock()
    async with harness(tmp_path, settings=quick(policy=LongPoll(0)), clock=clock) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100_000))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: h.sim.workflow_for(job.id) is not None)
        await h.engine.stop()
        h.sim.fault(500, route="get", seconds=30)
        clock.advance(hours=1)
        await h.restart_engine()
        await wait_for(lambda: bool(h.alerts.alerts))
        reads = h.sim.requests["get"]
        await wait_for(lambda: h.sim.requests["get"] >= reads + 12)  # three more rounds
        [(key, alert)] = h.alerts.alerts
        assert key == "unreadable" and job.id in alert
        assert not (await h.job(job.id)).final
        assert await h.available() == GRANT - PRICE


async def test_a_refusal_of_another_field_that_names_the_model_does_not_retire_it(tmp_path):
    """The orchestrator refuses one request's size in words that name the model ("… is not
    supported by gpt-image-2"): that job fails uncharged, but the model is not switched off
    for every server, nor the operator told it is retired."""
    problem = json.dumps(
        {
            "title": "One or more validation errors occurred.",
            "status": 400,
            "errors": {"steps[0].input.width": ["1024x1024 is not supported by gpt-image-2"]},
        }
    ).encode()
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(400, route="submit", body=problem)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.FAILED and ended.charged == 0
        assert "no longer available" not in (ended.error or "")
        assert (await h.guilds.settings(GUILD)).retired_models == set()
        assert h.alerts.alerts == []


async def test_a_base_url_without_the_api_is_the_operators_to_fix(tmp_path):
    """CIVITAI_BASE_URL with a wrong path (here /api): the workflows endpoint answers 404.
    That is no refusal of the member's request: the job ends uncharged saying the operator
    was told, and the operator is told to check the URL."""
    async with Simulator(speed=0.005, seed=7) as sim:
        sim.base_url += "/api"
        async with harness(tmp_path, settings=quick(), sim=sim) as h:
            await h.grant(GRANT)
            job = await h.engine.submit(h.request(quality="medium"))
            await h.settle_all()
            [ended] = await books_balance(h, job)
            assert ended.status is J.FAILED and ended.charged == 0
            assert "operator has been told" in (ended.error or "")
            [(key, alert)] = h.alerts.alerts
            assert key == "endpoint" and "CIVITAI_BASE_URL" in alert


async def test_running_jobs_resumed_at_a_wrong_base_url_are_not_taken_as_gone(tmp_path):
    """The bot restarts with CIVITAI_BASE_URL changed to a path the API is not at, while a
    job's workflow runs upstream: every read answers 404. That is not the workflow gone (it
    runs, and charges): the hold stays and the operator is told to check the URL, instead of
    the job ending uncharged."""
    async with Simulator(speed=0.005, seed=7) as sim:
        async with harness(tmp_path, settings=quick(), sim=sim) as h:
            await h.grant(GRANT)
            h.sim.script(Outcome(runtime=100_000))
            job = await h.engine.submit(h.request(quality="medium"))
            await wait_for(lambda: "running" in h.publisher.statuses(job.id))
        sim.base_url += "/api"
        async with harness(tmp_path, settings=quick(policy=LongPoll(0)), sim=sim) as h:
            await h.engine.start()  # resumes the running job
            await wait_for(lambda: bool(h.alerts.alerts))
            [(key, alert)] = h.alerts.alerts
            assert key == "endpoint" and "CIVITAI_BASE_URL" in alert
            assert not (await h.job(job.id)).final
            assert await h.available() == GRANT - PRICE


async def test_a_workflow_the_orchestrator_lost_ends_uncharged(tmp_path):
    """Asked again and again, the workflow is not found while the API answers at the base URL:
    it is gone upstream (nothing to charge, nothing to deliver), and the job ends."""
    async with harness(tmp_path, settings=quick(policy=LongPoll(0))) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100_000))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: h.sim.workflow_for(job.id) is not None)
        workflow = h.sim.workflow_for(job.id)
        assert workflow is not None
        del h.sim.workflows[workflow.id]
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.FAILED and ended.charged == 0
        assert h.alerts.alerts == [] and h.sim.requests["query"] == 1


async def test_an_api_that_redirects_is_the_operators_to_fix_not_retried(tmp_path):
    """A base URL that answers 301 (http for https, a moved host): the request is not followed
    off the configured host, nor retried for half an hour as 'not a workflow'; the job ends
    uncharged and the operator is told."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(301, route="submit", seconds=30)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.FAILED and ended.charged == 0
        assert "operator has been told" in (ended.error or "")
        [(_, alert)] = h.alerts.alerts
        assert "redirected (301)" in alert
        assert h.sim.requests["submit"] == 1


async def test_429_with_retry_after_on_every_route_is_waited_out(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        for route in ("submit", "get", "blob"):
            h.sim.fault(429, route=route, retry_after=0.01, times=2)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]


async def test_images_missing_at_the_deadline_are_counted_and_their_share_refundable(tmp_path):
    """Two of three images arrive, one never does: the two are posted, the member is told
    exactly what is missing, and the review item offers that image's share."""
    settings = quick(delivery_deadline=timedelta(seconds=0.5))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(unavailable_blobs=(1,)))
        job = await h.engine.submit(h.request(quality="medium", quantity=3))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and done.charged == 3 * PRICE
        assert done.missing_images == 1
        [(_, images)] = h.publisher.posts
        assert [i.index for i in images] == [0, 2]
        told = h.publisher.messages(job.id)[-1]
        assert told.startswith("1 of 3 images could not be fetched")
        [(item, _)] = h.reviews.items
        assert item.kind == "undelivered" and item.refund_amount == PRICE
        review = ReviewService(h.db, h.engine, h.jobs, h.ledger, h.moderation, h.guilds)
        outcome = await review.act(GUILD, item.id, Action.REFUND, actor_id=42)
        assert outcome.item.status == "refunded"
        assert await h.available() == GRANT - 2 * PRICE  # the missing image's share came back


async def test_a_dismissed_charge_for_missing_images_is_told_to_the_member(tmp_path):
    """The member read "a moderator will look at the charge": when a moderator dismisses it
    (the charge stands), the member is told so, not left waiting for a look that was taken."""
    settings = quick(delivery_deadline=timedelta(seconds=0.5))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(unavailable_blobs=(1,)))
        job = await h.engine.submit(h.request(quality="medium", quantity=3))
        await h.settle_all()
        [(item, _)] = h.reviews.items
        review = ReviewService(h.db, h.engine, h.jobs, h.ledger, h.moderation, h.guilds)
        await review.act(GUILD, item.id, Action.DISMISS, actor_id=42)
        told = h.publisher.messages(job.id)[-1]
        assert told == (
            "1 image(s) could not be posted; a moderator looked at the charge and it stands"
        )
        assert await h.available() == GRANT - 3 * PRICE


def test_the_missing_share_is_exact_and_never_more_than_the_charge():
    assert missing_share(234, 1, 3) == 78
    assert missing_share(100, 1, 3) == 33 and missing_share(100, 2, 3) == 67
    assert missing_share(0, 2, 3) == 0 and missing_share(50, 3, 3) == 50


async def test_discord_struggling_is_retried_and_the_result_posted_once(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.publisher.post_faults = [
            PostFailed("Discord answered 503", retry=True),
            PostFailed("Discord answered 429", retry=True),
        ]
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]


async def test_nowhere_to_post_fails_the_job_to_the_moderators(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.publisher.post_faults = [PostFailed("no channel and no DM", retry=False)]
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [failed] = await books_balance(h, job)
        assert failed.status is J.FAILED and failed.charged == PRICE
        [(item, _)] = h.reviews.items
        assert item.kind == "undelivered" and h.publisher.posts == []


async def test_a_restart_mid_blob_outage_still_delivers_once(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(503, route="blob", seconds=0.8)
        job = await h.engine.submit(h.request(quality="medium"))
        for _ in range(200):
            if (await h.job(job.id)).status is J.DELIVERING:
                break
            await asyncio.sleep(0.01)
        await h.restart_engine()
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]


async def test_a_charge_above_the_ledgers_amounts_settles_once(tmp_path):
    """The orchestrator's amounts go up to 2**31 - 1: a charge above the ledger's 10,000,000
    settles (the member pays what they have, the rest is the guild's audited loss) instead of
    failing the settlement for ever."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome("succeed", charge=20_000_000))
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status is J.DONE and job.charged == 20_000_000
        hold = await h.ledger.hold(job.id)
        assert hold.captured + hold.extra_charged == GRANT and hold.loss == 20_000_000 - GRANT
        assert await h.available() == 0


async def test_a_refund_booked_late_is_waited_for_before_settling(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome("fail", refund_delay=0.03))
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        job = await h.job(job.id)
        assert job.status is J.FAILED and job.charged == 0 == h.sim.charged_total()
        assert await h.available() == GRANT


async def test_a_refund_that_never_comes_is_waited_for_only_so_long(tmp_path):
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome("fail", refund_delay=3600))
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        await books_balance(h, job)
        job = await h.job(job.id)
        assert job.status is J.FAILED and job.charged == PRICE
        assert h.sim.requests["get"] <= 3  # two more reads, then settled as it stands
        # Charged for a failure: a moderator can refund it, and the member reads so.
        [(item, _)] = h.reviews.items
        assert item.job_id == job.id and item.kind == "undelivered"
        assert "no refund" in item.reason
        assert job.error is not None and "a moderator will look at the charge" in job.error


async def test_a_refund_booked_late_is_waited_for_after_downtime_past_the_deadline(tmp_path):
    """The bot was down longer than a job's deadline and grace; meanwhile its workflow failed
    and the orchestrator books the refund a moment late. The resumed job waits for the refund
    as any other failed job does: the member is not charged for a job upstream refunded."""
    clock = Clock()
    async with harness(tmp_path, settings=quick(retry_cap=1.0), clock=clock) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome("fail", runtime=40, refund_delay=0.5))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: h.sim.workflow_for(job.id) is not None)
        await h.engine.stop()  # the process goes down with the job running upstream
        workflow = h.sim.workflow_for(job.id)
        assert workflow is not None
        await wait_for(lambda: workflow.status(time.monotonic()) == "failed")
        assert workflow.net_charge(time.monotonic()) == PRICE  # the refund is not booked yet
        clock.advance(hours=1)
        await h.restart_engine()
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.charged == 0 == h.sim.charged_total()
        assert await h.available() == GRANT


async def test_a_job_past_its_grace_is_not_settled_from_a_report_older_than_its_cancel(tmp_path):
    """The host was suspended past a job's deadline and grace while its workflow still waited
    in the queue: the bot cancels it, and the orchestrator refunds a workflow canceled before
    it started. The job is settled from what the orchestrator says after the cancel (nothing
    charged), not from the report it had before asking."""
    clock = Clock()
    sim = Simulator(speed=1.0, seed=5)  # the queue takes 0.7 s or more: the cancel lands in it
    settings = quick(policy=Schedule(delays=(0.05,)))
    async with sim, harness(tmp_path, settings=settings, clock=clock, sim=sim) as h:
        await h.grant(GRANT)
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: h.sim.workflow_for(job.id) is not None)
        clock.advance(hours=1)
        await h.settle_all()
        [ended] = await books_balance(h, job)
        workflow = h.sim.workflow_for(job.id)
        assert workflow is not None and workflow.canceled_phase in ("unassigned", "scheduled")
        assert ended.charged == 0 == workflow.net_charge(time.monotonic())
        assert await h.available() == GRANT


async def test_a_workflow_once_not_found_is_asked_for_again(tmp_path):
    """One 404 may be a replica behind: the job is not ended uncharged while its workflow runs
    on upstream (and charges)."""
    async with harness(tmp_path, settings=quick(policy=LongPoll(0))) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome("succeed", runtime=200))
        job = await h.engine.submit(h.request(quality="medium"))
        h.sim.fault(404, route="get")
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and done.charged == PRICE


@pytest.mark.parametrize(("status", "alert"), [(401, "auth"), (307, "redirect")])
async def test_a_refusal_of_the_bot_while_following_alerts_the_operator_and_the_job_goes_on(
    tmp_path, status, alert
):
    """The token is refused (or the base URL starts redirecting, a moved host) while a job
    runs: the operator is told once, as at submit, and the job is followed on once the
    orchestrator answers again."""
    async with harness(tmp_path, settings=quick(policy=LongPoll(0))) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome("succeed", runtime=200))
        job = await h.engine.submit(h.request(quality="medium"))
        h.sim.fault(status, route="get", times=3)
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE
        assert [key for key, _ in h.alerts.alerts] == [alert]


async def test_a_charge_beyond_int32_still_settles_once(tmp_path):
    """Σ debits of a workflow's transactions can pass 2**31 - 1 (each amount is an int32, not
    their sum): the job still ends and its hold settles — the member pays what they have, the
    rest (up to the ledger's int32 cap) is the guild's audited loss — instead of the settlement
    failing for ever."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome("succeed", charge=2**31 + 7))
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        job = await h.job(job.id)
        hold = await h.ledger.hold(job.id)
        assert job.status is J.DONE and hold.settled
        assert hold.captured + hold.extra_charged == GRANT
        assert hold.loss == 2**31 - 1 - GRANT
        assert await h.available() == 0


@pytest.mark.parametrize("status", [400, 410])
async def test_a_refusal_while_getting_fresh_image_urls_is_one_more_try(tmp_path, status):
    """The result's signed URL expired, and the orchestrator refuses once (a gateway's 400 or
    410) when asked for fresh ones: the delivery asks again, without a traceback, and posts."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.fault(403, route="blob")  # an expired signed URL: fresh ones are asked for
        h.sim.fault(status, route="get")
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and done.charged == PRICE
        assert posted(h, job.id) == [1]
        assert h.sim.requests["get"] >= 2


@pytest.mark.parametrize("status", [413, 401, 400])
async def test_a_lost_submit_then_a_refusal_still_settles_what_upstream_charged(tmp_path, status):
    """The first submit's answer is lost after the orchestrator created the workflow; the
    retry is refused (a proxy's 413, or the token refused for a moment). The workflow runs on
    upstream and charges: the job must not end uncharged, but find it and settle its cost."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100))
        h.sim.lose_answer(route="submit")
        page = b"<html>Request blocked</html>" if status == 400 else None  # a WAF's, no fields
        h.sim.fault(status, route="submit", body=page)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.DONE and ended.charged == PRICE
        assert posted(h, job.id) == [1]


async def test_a_post_that_landed_as_the_deadline_passed_is_not_called_undeliverable(tmp_path):
    """The last try before the delivery deadline reaches Discord, but its answer is lost: the
    images are in the channel. The job is done, not 'could not be posted' with a refund item
    for the moderators."""
    settings = quick(delivery_deadline=timedelta(seconds=0))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.publisher.faults_after_post.append(PostFailed("the answer was lost", retry=True))
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and posted(h, job.id) == [1]
        assert done.delivered_message_ids == [1] and h.reviews.items == []


async def test_a_job_ending_while_the_disk_refuses_writes_is_settled_once_it_takes_them(
    tmp_path, caplog
):
    """The database's disk turns read-only while a job runs: nothing is lost or charged twice;
    once writes work again the job ends, charged what the orchestrator charged, posted once,
    and meanwhile the operator reads warnings naming the database, not a bug's tracebacks."""
    async with harness(tmp_path, settings=quick()) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: h.sim.workflows)  # submitted
        with unwritable(tmp_path / "bot.sqlite3"):
            await wait_for(lambda: h.sim.charged_total() == PRICE)  # it ended upstream
            await wait_for(lambda: any("read-only" in r.getMessage() for r in caplog.records))
            assert not (await h.job(job.id)).final
        await h.settle_all()
        [done] = await books_balance(h, job)
        assert done.status is J.DONE and done.charged == PRICE
        assert posted(h, job.id) == [1]


async def test_a_wait_of_zero_reads_running_jobs_on_a_schedule_not_in_a_busy_loop(tmp_path):
    """civitai.wait_seconds = 0 (no long-poll): each read of a running workflow comes back at
    once, so the next must wait (the documented 5, 10, 20… s cadence) instead of reading it
    again straight away, thousands of times a second per job."""
    config = Settings(database={"path": tmp_path / "bot.sqlite3"}, civitai={"wait_seconds": 0})
    services = await build_services(config, base_url="http://127.0.0.1:9", token="unused")
    try:
        policy = services.engine_settings().policy
        assert policy.submit_wait == 0
        assert all(policy.next_request(attempt)[0] >= 5 for attempt in range(10))
    finally:
        await services.aclose()


async def test_a_job_refused_for_a_long_time_keeps_its_task(tmp_path):
    """The token stays refused while a job runs (the operator is away): the job is tried
    again and again, its waits capped. Past the 1,024th try the growing wait overflowed a
    float and the job's task died with a traceback."""
    settings = quick(policy=LongPoll(0), retry_base=0.00001, retry_cap=0.00001)
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(runtime=100_000))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: "running" in h.publisher.statuses(job.id))
        h.sim.fault(401, route="get", seconds=60)
        await wait_for(lambda: h.sim.requests["get"] >= 1100, timeout=60)
        assert h.engine.running() == 1 and not (await h.job(job.id)).final


@pytest.mark.parametrize("kind", ["block_charged", "fail"])
async def test_an_ending_learned_after_downtime_past_the_deadline_keeps_its_kind(tmp_path, kind):
    """The bot was down past a job's deadline; meanwhile its workflow was blocked (or failed)
    upstream on its own. Learned on resume, that is how the job ended: a block goes to the
    moderators with its charge (they may refund it), not recorded as 'did not finish in time'."""
    clock = Clock()
    settings = quick(retry_cap=1.0, policy=LongPoll(0))
    async with harness(tmp_path, settings=settings, clock=clock) as h:
        await h.grant(GRANT)
        h.sim.script(Outcome(kind, runtime=40))
        job = await h.engine.submit(h.request(quality="medium"))
        await wait_for(lambda: "submitted" in h.publisher.statuses(job.id))
        await h.engine.stop()
        workflow = h.sim.workflow_for(job.id)
        assert workflow is not None
        await wait_for(lambda: workflow.status(time.monotonic()) == "failed")
        clock.advance(hours=1)
        await h.restart_engine()
        await h.settle_all()
        [ended] = await books_balance(h, job)
        if kind == "fail":
            assert ended.status is J.FAILED and ended.charged == 0
        else:
            assert ended.status is J.BLOCKED and ended.charged == PRICE
            [(item, _)] = h.reviews.items
            assert item.job_id == job.id


async def test_results_on_a_host_not_in_blob_hosts_tell_the_operator(tmp_path):
    """The orchestrator serves its images from a host civitai.blob_hosts does not list (here
    127.0.0.1, the API being reached as localhost): no result can be downloaded. The operator
    is told which host to add as soon as a job finishes, not left to find every delivery
    failing after its deadline."""
    async with Simulator(speed=0.005, seed=7) as sim:
        sim.base_url = sim.base_url.replace("127.0.0.1", "localhost")
        settings = quick(delivery_deadline=timedelta(seconds=0.3))
        async with harness(tmp_path, settings=settings, sim=sim) as h:
            await h.grant(GRANT)
            job = await h.engine.submit(h.request(quality="medium"))
            await h.settle_all()
            assert (await h.job(job.id)).status is J.FAILED and h.publisher.posts == []
            [(key, alert)] = h.alerts.alerts
            assert key == "blob-host" and "127.0.0.1" in alert
            assert "BOT_CIVITAI__BLOB_HOSTS" in alert


async def test_results_redirected_to_a_host_not_in_blob_hosts_tell_the_operator(tmp_path):
    """The workflow lists its images on the orchestrator's own host, which redirects each
    download to a storage host civitai.blob_hosts does not list (here 127.0.0.1): nothing can
    be fetched. The operator is told which host to add, and the job ends like any charged
    result that could not be posted: the member told, the charge before the moderators."""
    async with Simulator(speed=0.005, seed=7) as sim:
        sim.base_url = sim.blobs.listed_base = sim.base_url.replace("127.0.0.1", "localhost")
        settings = quick(delivery_deadline=timedelta(seconds=0.3))
        async with harness(tmp_path, settings=settings, sim=sim) as h:
            await h.grant(GRANT)
            job = await h.engine.submit(h.request(quality="medium"))
            await h.settle_all()
            [ended] = await books_balance(h, job)
            assert ended.status is J.FAILED and ended.charged == PRICE
            assert h.publisher.posts == []
            assert "a moderator will look at the charge" in h.publisher.messages(job.id)[-1]
            [(item, _)] = h.reviews.items
            assert item.job_id == job.id and item.kind == "undelivered"
            [(key, alert)] = h.alerts.alerts
            assert key == "blob-host" and "'127.0.0.1'" in alert
            assert "BOT_CIVITAI__BLOB_HOSTS" in alert


async def test_results_over_the_download_cap_tell_the_operator(tmp_path):
    """Every result is larger than civitai.max_blob_bytes (set too low for the images the
    models make): none can be downloaded. The operator is told which setting stops them, and
    the job ends like any charged result that could not be posted."""
    settings = quick(delivery_deadline=timedelta(seconds=0.3))
    async with harness(tmp_path, settings=settings) as h:
        h.client.max_blob_bytes = 1000  # the operator's BOT_CIVITAI__MAX_BLOB_BYTES
        await h.grant(GRANT)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        [ended] = await books_balance(h, job)
        assert ended.status is J.FAILED and ended.charged == PRICE
        assert "a moderator will look at the charge" in h.publisher.messages(job.id)[-1]
        [(key, alert)] = h.alerts.alerts
        assert key == "blob-size" and "BOT_CIVITAI__MAX_BLOB_BYTES" in alert and "1,000" in alert


def refusal_waits(caplog) -> list[float]:
    """The waits (s) the refused workflow reads were asked again after, in order."""
    found = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    return [float(m.rsplit("again in ", 1)[1].rstrip("s")) for m in found if "in " in m]
