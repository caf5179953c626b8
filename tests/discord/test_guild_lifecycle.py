"""The bot removed from a server (kicked or banned) and invited back, or the server in an
outage, while members' jobs run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.civitai.simulator import Outcome
from tests.discord.harness import World, started, text_of, world

OLD = timedelta(minutes=14, seconds=30)  # the token is dead by the time the job ends


async def _undelivered_while_removed(w: World) -> str:
    """A job that ends while the bot is out of the server, the member sharing no other server
    with it (no DM): its charge goes to the moderators' review."""
    await w.grant(1000)
    w.sim.script(Outcome(runtime=100))
    h = await w.fake.slash(
        w.guild,
        w.channel,
        w.member,
        "create gpt-image-2",
        options={"prompt": "a kite"},
        created_at=datetime.now(UTC) - OLD,
    )
    job = await started(w, h)
    await w.wait_job(job.id, "running")
    w.fake.remove_bot(w.guild)
    w.fake.set_accepts_dms(w.member, False)
    job = await w.wait_job(job.id, "failed", timeout=30)
    assert job.charged == 286 and await w.holds() == 1  # settled once, charge under review
    return job.id


async def test_review_items_made_while_the_bot_was_out_are_posted_when_it_is_back(tmp_path):
    async with world(tmp_path) as w:
        mod_channel = w.fake.add_channel(w.guild, "mods")
        await w.set_guild(mod_channel_id=mod_channel)
        job_id = await _undelivered_while_removed(w)
        await w.fake.settle()
        assert w.fake.channel_messages(mod_channel) == []  # it cannot post there now
        w.fake.add_bot_back(w.guild)
        [item] = await w.fake.wait_for(
            lambda: w.fake.channel_messages(mod_channel), what="the review item", timeout=10
        )
        assert f"job {job_id}" in text_of(item)
        assert "Refund" in str(item["components"])


async def test_an_ending_no_one_could_be_told_of_is_shown_when_the_bot_is_back(tmp_path):
    """The job fails while the bot is out of the server and the member takes no DMs: nowhere
    to tell them. Invited back, the bot shows the ending on the job's status message, which
    said it was running for good."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("fail", runtime=100))
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a kite"},
            created_at=datetime.now(UTC) - timedelta(minutes=14, seconds=57),  # token dead
        )
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        w.fake.remove_bot(w.guild)
        w.fake.set_accepts_dms(w.member, False)
        job = await w.wait_job(job.id, "failed", timeout=30)
        await w.wait_idle()
        await w.fake.settle()
        assert "failed" not in text_of(w.status_message(job))  # said "running" for good
        w.fake.add_bot_back(w.guild)
        await w.wait_status(job, "failed", timeout=10)
        assert job.charged == 0 and await w.available() == 1000
