"""Every way a job can end, against the simulator over HTTP, settled exactly."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import timedelta

import pytest
from PIL import Image

from bot.catalog import Model
from bot.civitai.simulator import Outcome
from bot.engine.engine import EngineSettings, NotAllowed
from bot.engine.follow import LongPoll, Schedule
from bot.engine.requests import Requester
from bot.store import audit
from bot.store.jobs import JobStatus
from tests.engine.harness import CHANNEL, GUILD, MEMBER, harness

PRICE_MEDIUM_1024 = 78  # gpt-image-2 medium 1024x1024


async def test_success_is_charged_what_the_orchestrator_charged_and_delivered_once(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(1000)
        job = await h.engine.submit(h.request(size="1920x1072", quality="high", quantity=2))
        assert job.hold_amount == 416
        assert await h.available() == 1000 - 416  # held while it runs
        await h.settle_all()
        done = await h.job(job.id)
        assert done.status is JobStatus.DONE
        assert done.charged == 416 == h.sim.charged_total()
        assert await h.available() == 584
        [(posted_id, images)] = h.publisher.posts
        assert posted_id == job.id and len(images) == 2
        for img in images:
            with Image.open(io.BytesIO(img.data)) as decoded:
                assert decoded.size == (1920, 1072)
        assert done.delivered_message_ids == h.publisher.deliveries[job.id]
        assert h.publisher.statuses(job.id)[-1] == "done"
        # Long-poll on submit: one API request for the whole job.
        assert h.client.stats["submit"] == 1 and h.client.stats["get"] == 0


@pytest.mark.parametrize(
    ("outcome", "status", "charged"),
    [
        ("fail", JobStatus.FAILED, 0),
        ("expire", JobStatus.EXPIRED, 0),
        ("block", JobStatus.BLOCKED, 0),
        ("block_charged", JobStatus.BLOCKED, PRICE_MEDIUM_1024),
        ("blob_blocked", JobStatus.BLOCKED, PRICE_MEDIUM_1024),
        ("output_errors", JobStatus.BLOCKED, 0),
    ],
)
async def test_unhappy_endings_settle_from_the_workflows_transactions(
    tmp_path, outcome, status, charged
):
    async with harness(tmp_path) as h:
        await h.grant(500)
        h.sim.script(outcome)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is status
        assert ended.charged == charged == h.sim.charged_total()
        assert await h.available() == 500 - charged
        assert h.publisher.posts == []
        hold = await h.ledger.hold(job.id)
        assert hold.captured + hold.released == hold.amount
        assert h.publisher.messages(job.id), "the member is told how it ended"


async def test_blocked_job_goes_to_review_without_revealing_the_filter(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(500)
        h.sim.script("block")
        job = await h.engine.submit(h.request("something the filter hates", quality="medium"))
        await h.settle_all()
        [(item, item_job)] = h.reviews.items
        assert item.kind == "blocked" and item.job_id == job.id and item_job.id == job.id
        assert item.status == "open"
        [message] = h.publisher.messages(job.id)
        assert "blocked" in message and "review" in message
        assert "hates" not in message


async def test_cancel_while_processing_settles_what_was_charged(tmp_path):
    async with harness(tmp_path, speed=0.02) as h:
        await h.grant(500)
        h.sim.script("never")
        job = await h.engine.submit(h.request(quality="medium"))
        await _wait_for(lambda: h.sim.workflow_for(job.id) is not None)
        wf = h.sim.workflow_for(job.id)
        await _wait_for(lambda: wf.status(time.monotonic()) == "processing")
        await h.engine.cancel(job.id, Requester(GUILD, CHANNEL, MEMBER))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is JobStatus.CANCELED
        # The simulator charges work that had started: the ledger follows it exactly.
        assert ended.charged == PRICE_MEDIUM_1024 == h.sim.charged_total()
        assert await h.available() == 500 - PRICE_MEDIUM_1024


async def test_cancel_before_submission_charges_nothing_and_submits_nothing(tmp_path):
    async with harness(tmp_path, client_retries=0) as h:
        await h.grant(500)
        h.sim.fault(503, times=10_000, route="submit")
        job = await h.engine.submit(h.request(quality="medium"))
        await _wait_for(lambda: h.sim.requests["submit"] >= 2)
        await h.engine.cancel(job.id, Requester(GUILD, CHANNEL, MEMBER))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is JobStatus.CANCELED and ended.charged == 0
        assert h.sim.submissions == []
        assert await h.available() == 500


async def test_only_the_requester_or_a_moderator_may_cancel(tmp_path):
    async with harness(tmp_path, speed=0.02) as h:
        await h.grant(500)
        h.sim.script("never")
        job = await h.engine.submit(h.request(quality="medium"))
        with pytest.raises(NotAllowed):
            await h.engine.cancel(job.id, Requester(GUILD, CHANNEL, 999))
        with pytest.raises(NotAllowed):  # another guild's moderator
            await h.engine.cancel(job.id, Requester(GUILD + 1, CHANNEL, 999, is_moderator=True))
        await h.engine.cancel(job.id, Requester(GUILD, CHANNEL, 999, is_moderator=True))
        await h.settle_all()
        assert (await h.job(job.id)).status is JobStatus.CANCELED


async def test_deadline_cancels_upstream_and_expires_settled_from_the_report(tmp_path):
    settings = EngineSettings(
        policy=LongPoll(60), deadline=timedelta(seconds=0.6), retry_base=0.01, retry_cap=0.05
    )
    async with harness(tmp_path, speed=0.005, settings=settings) as h:
        await h.grant(500)
        h.sim.script("never")
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is JobStatus.EXPIRED
        wf = h.sim.workflow_for(job.id)
        assert wf is not None and wf.canceled_at is not None, "the workflow was canceled upstream"
        assert ended.charged == h.sim.charged_total()
        assert await h.available() == 500 - ended.charged


async def test_429_storms_and_500s_are_ridden_out(tmp_path):
    async with harness(tmp_path, client_retries=2) as h:
        await h.grant(2000)
        h.sim.fault(429, times=7, retry_after=0.01)
        h.sim.fault(500, times=4)
        jobs = [await h.engine.submit(h.request(f"storm {i}", quality="low")) for i in range(4)]
        await h.settle_all()
        for job in jobs:
            assert (await h.job(job.id)).status is JobStatus.DONE
        assert len(h.sim.submissions) == 4, "idempotent retries never created a second workflow"
        assert h.sim.charged_total() == 4 * 13
        assert await h.available() == 2000 - 4 * 13


async def test_400_at_submit_releases_the_hold_and_names_the_field(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(500)
        h.sim.fault(400, route="submit")
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is JobStatus.FAILED and ended.charged == 0
        assert "body" in ended.error and "nothing was charged" in ended.error
        assert await h.available() == 500


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_release_and_alert_the_operator_once(tmp_path, status):
    async with harness(tmp_path) as h:
        await h.grant(1000)
        h.sim.fault(status, times=3, route="submit")
        jobs = [await h.engine.submit(h.request(f"x{i}", quality="medium")) for i in range(3)]
        await h.settle_all()
        for job in jobs:
            ended = await h.job(job.id)
            assert ended.status is JobStatus.FAILED and ended.charged == 0
            assert "operator" in ended.error
        assert await h.available() == 1000
        assert len(h.alerts.alerts) == 1


@pytest.mark.parametrize("fallback", ["hold", "allow"])
async def test_a_pre_moderation_check_refused_for_the_token_alerts_the_operator(tmp_path, fallback):
    """The token is revoked with AI pre-moderation on: its check is refused (401) before any
    job is submitted. The operator must be told, as a refused submit tells them; with the
    default fallback every request waited for the moderators and nobody told the operator."""
    async with harness(tmp_path) as h:
        await h.grant(1000)
        await h.services.safety.set_premoderation(GUILD, True, fallback=fallback, actor_id=None)
        h.sim.fault(401, times=100, route="submit")
        first = await h.engine.submit(h.request("a lighthouse", quality="medium"))
        await h.engine.submit(h.request("a harbour", quality="medium"))
        await h.settle_all()
        if fallback == "hold":
            assert (await h.job(first.id)).status is JobStatus.HELD
        assert [key for key, _ in h.alerts.alerts] == ["auth"]


async def test_whatif_above_the_estimate_is_what_gets_held(tmp_path):
    settings = EngineSettings(policy=LongPoll(60), whatif=True, retry_base=0.01, retry_cap=0.05)
    async with harness(tmp_path, settings=settings) as h:
        h.sim.surcharge = 7
        await h.grant(500)
        job = await h.engine.submit(h.request(quality="medium"))
        assert job.estimate == PRICE_MEDIUM_1024 and job.whatif == PRICE_MEDIUM_1024 + 7
        assert job.hold_amount == PRICE_MEDIUM_1024 + 7
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is JobStatus.DONE and ended.charged == PRICE_MEDIUM_1024 + 7
        # The whatif did not claim the job's externalId: the real submission ran.
        assert len(h.sim.submissions) == 1
        assert await h.available() == 500 - PRICE_MEDIUM_1024 - 7


async def test_a_charge_above_the_hold_is_paid_down_to_zero_and_the_rest_is_a_loss(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(100)
        h.sim.script(Outcome(charge=PRICE_MEDIUM_1024 + 40))
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.charged == PRICE_MEDIUM_1024 + 40
        assert await h.available() == 0  # 100 - 78 = 22 left, the extra 40 takes it to 0
        [loss] = await audit.events(h.db, GUILD, "ledger.guild_loss")
        assert loss.details["loss"] == 18


async def test_delivery_retries_after_discord_errors_and_posts_once(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(500)
        h.publisher.fail_deliveries = 2
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        assert (await h.job(job.id)).status is JobStatus.DONE
        assert [p[0] for p in h.publisher.posts] == [job.id]


async def test_schedule_policy_reports_queue_position_and_processing(tmp_path):
    settings = EngineSettings(policy=Schedule((0.01,)), retry_base=0.01, retry_cap=0.05)
    async with harness(tmp_path, speed=0.05, settings=settings) as h:
        await h.grant(500)
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all(timeout=30)
        seen = [
            (u.job.workflow_status, u.job.queue_position)
            for u in h.publisher.updates
            if u.job.id == job.id and u.job.status is JobStatus.RUNNING
        ]
        assert ("scheduled", 0) in seen
        assert any(status == "processing" for status, _ in seen)
        assert (await h.job(job.id)).status is JobStatus.DONE


async def test_flat_priced_models_settle_exactly(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(5000)
        specs = [
            (Model.GPT_IMAGE_1_5, {"quality": "high", "quantity": 2}, 750),
            (Model.GPT_IMAGE_1, {"quality": "auto"}, 300),
            (Model.DALL_E_3, {"quality": "hd"}, 300),
            (Model.DALL_E_2, {"quantity": 3, "size": "512x512"}, 900),
        ]
        jobs = []
        for model, options, price in specs:
            job = await h.engine.submit(h.request(model=model, **options))
            assert job.hold_amount == price
            jobs.append((job, price))
        await h.settle_all()
        for job, price in jobs:
            ended = await h.job(job.id)
            assert ended.status is JobStatus.DONE and ended.charged == price
        assert await h.available() == 5000 - sum(p for _, p in jobs)


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
