"""Endings that go wrong: a deadline the orchestrator will not honour, images that cannot be
fetched, and a submit that reached the orchestrator just before a crash."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot.civitai.simulator import Outcome
from bot.engine.engine import EngineSettings
from bot.engine.follow import LongPoll
from bot.review import Action, ReviewService
from bot.store.jobs import JobStatus
from tests.engine.harness import GUILD, MEMBER, harness

PRICE = 78  # gpt-image-2 medium 1024x1024


def quick(**changes: object) -> EngineSettings:
    base = EngineSettings(policy=LongPoll(60), retry_base=0.01, retry_cap=0.05)
    return replace(base, **changes)


async def test_past_the_deadline_a_workflow_that_still_succeeds_is_delivered_and_charged(
    tmp_path,
):
    """The orchestrator refuses the cancel (409) and finishes anyway: the member gets the
    images they pay for, instead of an 'expired' job charged for nothing."""
    settings = quick(deadline=timedelta(seconds=0.3))
    async with harness(tmp_path, speed=0.02, settings=settings) as h:
        await h.grant(500)
        h.sim.script(Outcome(runtime=40))  # 0.8 s here: well past the 0.3 s deadline
        h.sim.fault(409, times=100, route="cancel")
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        done = await h.job(job.id)
        assert done.status is JobStatus.DONE
        assert done.charged == PRICE == h.sim.charged_total()
        assert [p[0] for p in h.publisher.posts] == [job.id]
        assert await h.available() == 500 - PRICE


async def test_a_workflow_that_never_ends_is_settled_from_its_last_report_after_a_grace(tmp_path):
    settings = quick(deadline=timedelta(seconds=0.2), expire_grace=timedelta(seconds=0.3))
    async with harness(tmp_path, speed=0.02, settings=settings) as h:
        await h.grant(500)
        h.sim.script("never")
        h.sim.fault(409, times=1000, route="cancel")  # and it cannot be stopped either
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is JobStatus.EXPIRED
        # The orchestrator reported the debit and never a refund: that is what was charged.
        assert ended.charged == PRICE
        hold = await h.ledger.hold(job.id)
        assert hold.settled_at is not None


async def test_images_that_cannot_be_fetched_fail_the_job_and_go_to_the_moderators(tmp_path):
    settings = quick(delivery_deadline=timedelta(seconds=0.5))
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(500)
        h.sim.fault(404, times=10_000, route="blob")
        job = await h.engine.submit(h.request(quality="medium"))
        await h.settle_all()
        failed = await h.job(job.id)
        assert failed.status is JobStatus.FAILED and "moderator" in failed.error
        assert failed.charged == PRICE, "the orchestrator charged; a moderator may refund"
        [(item, _)] = h.reviews.items
        assert item.kind == "undelivered" and item.job_id == job.id
        assert item.refund_amount is None  # nothing arrived: all of it is refundable
        # Each 404 sent the engine back to the orchestrator for a fresh URL, until the deadline.
        assert h.sim.requests["blob"] >= 2 and h.sim.requests["get"] >= 2
        assert h.publisher.posts == []
        # A moderator gives the Buzz back.
        review = ReviewService(h.db, h.engine, h.jobs, h.ledger, h.moderation, h.guilds)
        outcome = await review.act(GUILD, item.id, Action.REFUND, actor_id=42)
        assert outcome.item.status == "refunded"
        assert await h.available() == 500


async def test_a_submit_that_reached_the_orchestrator_before_a_crash_is_recovered(tmp_path):
    """The POST went out, the process died before recording the workflow, the member then
    canceled: the restarted engine finds the workflow by its externalId, stops it and settles
    from what the orchestrator charged — it does not release everything as if nothing ran."""
    async with harness(tmp_path, speed=0.02) as h:
        await h.grant(500)
        h.sim.script("never")
        request = h.request(quality="medium")
        validated = h.engine.validate(request)
        job = await h.engine.submit(request)
        await h.engine.stop()  # the process "dies" right after the POST went out
        await h.client.submit(h.client.template([validated.step()], job.id))
        wf = h.sim.workflow_for(job.id)
        assert wf is not None
        await h.db.write(
            h.jobs.update_in,
            job.id,
            submit_attempted_at=h.engine.clock(),
            cancel_requested_by=MEMBER,
        )
        # Back to queued with no workflow id, as a crash before the commit leaves it.
        await h.db.write(
            lambda tx: tx.execute(
                "UPDATE jobs SET status = 'queued', workflow_id = NULL WHERE id = ?", (job.id,)
            )
        )
        await h.restart_engine()
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status is JobStatus.CANCELED
        assert ended.workflow_id == wf.id, "the same workflow, found again"
        assert len(h.sim.submissions) == 1, "never a second workflow"
        assert ended.charged == h.sim.charged_total()
        assert await h.available() == 500 - ended.charged
