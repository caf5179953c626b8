"""Edit sources rated above what the channel allows are refused privately, before anything is
held: the orchestrator rates each uploaded source (UploadConsumerBlob moderates on the fly)."""

from __future__ import annotations

from tests.discord.harness import is_ephemeral, png, text_of, world
from tests.discord_admin.helpers import request, started_job
from tests.safety.helpers import nsfw_channel


async def test_a_source_rated_above_the_channel_is_refused_before_anything_is_held(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.upload_nsfw_level = "r"
        handle = await request(w, "make it blue", attachments={"image": ("a.png", png())})
        first = await handle.wait_for_original(lambda m: "Not started" in text_of(m))
        assert is_ephemeral(first)
        assert text_of(first) == (
            "Not started, nothing was charged: your image was rated R and this channel allows "
            "up to PG-13."
        )
        assert await w.jobs() == [] and await w.holds() == 0
        assert w.sim.submissions == [] and len(w.sim.uploads) == 1
        assert w.channel_messages() == []  # nothing public
        assert await w.available() == 1000


async def test_the_same_source_is_fine_in_an_age_restricted_channel(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.upload_nsfw_level = "x"
        after_dark = nsfw_channel(w)
        handle = await request(
            w, "make it blue", channel=after_dark, attachments={"image": ("a.png", png())}
        )
        job = await started_job(w, handle)
        await w.wait_job(job.id, "done", "blocked")


async def test_an_unrated_source_goes_on_and_its_result_is_checked(tmp_path):
    """The rating is the orchestrator's where it can give one: an upload that fails leaves
    the result's own rating to decide."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.fault(415, route="upload")  # the orchestrator would not rate this one
        handle = await request(w, "make it blue", attachments={"image": ("a.png", png())})
        job = await started_job(w, handle)
        job = await w.wait_job(job.id, "done")
        assert job.max_rating == "pg13" and len(w.results_of(job.id)) == 1


async def test_a_source_rated_above_the_channel_is_refused_before_its_prompt_is_enhanced(
    tmp_path,
):
    """With enhance:True the prompt goes upstream to be enhanced (a charge of its own) before
    the image request is admitted. A source the channel may not show must be refused first:
    the member paid for an enhancement of a request that could never run."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.upload_nsfw_level = "r"
        handle = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "make it blue", "enhance": True},
            attachments={"image": ("a.png", png(), "image/png")},
        )
        told = await handle.wait_for_original(lambda m: "Not started" in text_of(m))
        assert text_of(told) == (
            "Not started, nothing was charged: your image was rated R and this channel allows "
            "up to PG-13."
        )
        await w.fake.settle()
        assert w.sim.submissions == [] and await w.jobs() == []
        assert await w.available() == 1000
