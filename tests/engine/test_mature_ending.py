"""The engine's side of channel levels, without Discord: a job keeps its channel's level
across a restart, and a result rated above it ends blocked with a 'mature' review item,
settled at what the orchestrator charged, never delivered."""

from __future__ import annotations

from dataclasses import replace

from bot.civitai.simulator import Outcome
from bot.engine.mature import NOT_POSTED
from tests.engine.harness import harness


async def test_a_result_rated_above_the_level_is_diverted_even_after_a_restart(tmp_path):
    async with harness(tmp_path, speed=0.05) as h:
        await h.grant(1000)
        h.sim.script(Outcome(nsfw_level="r"), prompt="a fox at night")
        # Admitted, then the process dies before the job ran: a new engine picks it up, with
        # the level its channel allowed at admission (the lane reads it from the database).
        job = await h.engine.submit(h.request("a fox at night"), launch=False)
        assert job.max_rating == "pg13"
        await h.restart_engine()
        await h.settle_all()
        ended = await h.job(job.id)
        assert ended.status.value == "blocked" and ended.max_rating == "pg13"
        assert h.publisher.posts == []
        assert NOT_POSTED in h.publisher.messages(job.id)
        [(item, _)] = h.reviews.items
        assert (item.kind, item.source, item.details["rating"]) == ("mature", "mature", "r")
        hold = await h.ledger.hold(job.id)
        assert hold is not None and hold.settled and hold.charged == ended.charged > 0
        # Released later: the images come back from the orchestrator (unlocked) for posting.
        images = await h.engine.withheld_images(ended)
        assert len(images) == 1 and images[0].mime.startswith("image/")


async def test_an_age_restricted_channel_gets_its_result(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(1000)
        request = h.request("a fox at night [sim:r]")
        adult = replace(request, requester=replace(request.requester, age_restricted=True))
        job = await h.engine.submit(adult)
        await h.settle_all()
        assert (await h.job(job.id)).status.value == "done"
        assert len(h.publisher.posts) == 1 and h.reviews.items == []
