"""What the operator pays for one member's request on the OpenAI lane: a call that reached the
endpoint and streamed output (partial images) was run, and billed, upstream, and cannot be
resumed; calling again is paying again. Such calls are bounded per job; calls the endpoint
surely did not act on (a refused connection, a 429 before any output) are retried as before."""

from __future__ import annotations

import asyncio

import pytest

from bot.engine.requests import Requester
from tests.engine.harness import CHANNEL, GUILD, MEMBER
from tests.openai_api.lane_harness import LaneHarness, lane_harness

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("outcome", "options"),
    [
        ("no_completed", {}),
        ("break", {"after_events": 2}),
        # A rate limit told mid-stream, after previews: the call ran, and was billed.
        ("error_event", {"code": "rate_limit_exceeded"}),
    ],
)
async def test_calls_that_streamed_output_but_no_image_are_made_at_most_twice(
    tmp_path, outcome, options
):
    """The endpoint streams previews, then ends (or breaks) without the final image, every
    time: the job was called again and again (3 tries a round, 5 rounds: 15 billed calls for
    one request); now a second such call ends the job, uncharged, and the operator is told."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script(outcome, times=100, **options)
        job = await h.run(h.request())
        assert h.sim.requests["generations"] == 2
        assert job.status.value == "failed" and job.charged == 0
        assert await h.available() == 1000
        assert "nothing was charged" in (job.error or "")
        assert [key for key, _ in h.alerts.alerts] == ["openai-output-lost"]
        # The alert sends the operator to the audit log: one entry for each billed call.
        lost = await h.audit("upstream.call_lost")
        assert len(lost) == 2 and all(e.target == job.id for e in lost)


async def test_calls_surely_not_acted_on_are_still_retried(tmp_path):
    """429s before any output do not count: the request was not run upstream."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("rate_limited", times=4, retry_after=0.01)
        h.sim.script("no_completed")
        job = await h.run(h.request())
        assert job.status.value == "done" and job.charged == 65
        assert h.sim.requests["generations"] == 6
        assert h.alerts.alerts == []


async def test_one_call_with_output_lost_is_tried_again_once(tmp_path):
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("no_completed")
        job = await h.run(h.request())
        assert job.status.value == "done" and job.charged == 65
        assert h.sim.requests["generations"] == 2


async def until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def second_try_streaming(h: LaneHarness) -> tuple[str, asyncio.Event]:
    """A job whose first call streamed previews but no image (billed), and whose second call
    is streaming now (held before its final image)."""
    await h.grant(1000)
    await h.engine.start()
    h.sim.script("no_completed")
    gate = h.sim.hold_final_images()
    job = await h.engine.submit(h.request())
    # Two previews per call: the second call's have come.
    await until(lambda: h.sim.requests["generations"] == 2 and len(h.publisher.previews) >= 4)
    return job.id, gate


async def test_a_cancel_while_retrying_keeps_every_billed_call_in_the_audit_log(tmp_path):
    async with lane_harness(tmp_path) as h:
        job_id, _ = await second_try_streaming(h)
        await h.engine.cancel(job_id, Requester(GUILD, CHANNEL, MEMBER))
        await h.settle_all()
        job = await h.job(job_id)
        assert job.status.value == "canceled" and job.charged == 0
        lost = await h.audit("upstream.call_lost")
        assert [e.details["reason"] for e in lost] == ["retried", "canceled"]


async def test_a_restart_while_retrying_keeps_every_billed_call_in_the_audit_log(tmp_path):
    async with lane_harness(tmp_path) as h:
        job_id, gate = await second_try_streaming(h)
        await h.restart_engine()  # the second call dies with the old engine
        await until(lambda: h.sim.requests["generations"] == 3)
        gate.set()
        await h.settle_all()
        job = await h.job(job_id)
        assert job.status.value == "done" and job.charged == 65
        lost = await h.audit("upstream.call_lost")
        assert [e.details["reason"] for e in lost] == ["retried", "restart"]


async def test_images_that_came_before_the_last_call_broke_are_delivered_not_thrown_away(
    tmp_path,
):
    """Two images asked; each call streams the first (two previews and the image), then the
    connection drops. The second call is the last one allowed: its image was made, and paid
    for upstream, so the member gets it, charged for one image, rather than nothing."""
    async with lane_harness(tmp_path) as h:
        await h.grant(1000)
        await h.engine.start()
        h.sim.script("break", times=2, after_events=3)
        job = await h.run(h.request(quantity=2))
        assert h.sim.requests["generations"] == 2
        assert job.status.value == "done", job.error
        assert job.charged == job.estimate // 2 > 0
        assert await h.available() == 1000 - job.charged
        [(_, images)] = h.publisher.posts
        assert len(images) == 1
        # The first call's image was thrown away when it was made again: billed, and logged.
        lost = await h.audit("upstream.call_lost")
        assert [e.details["reason"] for e in lost] == ["retried"]
