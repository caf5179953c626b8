"""What changed while a member's request waited for a moderator (an admin's settings, the
member's other jobs): the approval checks it again, as a new request would be checked, and
tells the moderator why it cannot run yet."""

from __future__ import annotations

import pytest

from bot.civitai.simulator import Outcome
from tests.discord.harness import text_of, world
from tests.discord_admin.helpers import (
    COST,
    ask,
    delete_channel,
    held,
    item_message,
    ledger_kinds,
    mod_channel,
    press,
    request,
    started_job,
)
from tests.fakes.state import SEND_MESSAGES
from tests.safety.helpers import nsfw_channel


async def test_an_approval_after_the_admin_switched_the_model_off_is_refused(tmp_path):
    """The member's model is switched off (/settings model) while the request waits: an
    Approve would run it and charge the member for a model the server no longer offers."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        job = await held(w, "a castle at dawn")
        item = await item_message(w, job)
        await ask(w, w.admin, "settings default-model", {"model": "gpt-image-1.5"})
        await ask(w, w.admin, "settings model", {"model": "gpt-image-2", "enabled": False})

        text = await press(w, item, "Approve", w.moderator)
        assert text == (
            "The model gpt-image-2 has been switched off here since; reject the job instead."
        )
        assert (await w.services.jobs.job(job.id)).status.value == "held"
        assert w.sim.submissions == []
        assert await w.available() == 1000 - COST  # still only held
        # Reject settles it: nothing charged.
        await press(w, item, "Reject", w.moderator)
        await w.wait_job(job.id, "rejected")
        assert await w.available() == 1000
        assert await ledger_kinds(w) == [("grant", 1000), ("hold", COST), ("release", COST)]


async def test_an_approval_over_the_members_job_limit_tells_the_moderator_why(tmp_path):
    """The member started another job while this one waited and is at the server's limit:
    the moderator is told that the member is busy, not "you already have 1 job(s) running,
    nothing was charged" as if the moderator had asked for an image."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.admin, "settings concurrency", {"per-member": 1, "per-guild": 5})
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        job = await held(w, "a castle at dawn")
        item = await item_message(w, job)
        w.sim.script(Outcome(runtime=300), prompt="a fox")
        running = await started_job(w, await request(w, "a fox"))

        text = await press(w, item, "Approve", w.moderator)
        assert text == (
            f"<@{w.member}> already has 1 job(s) running, the limit here is 1; "
            "approve this again once one has ended."
        )
        assert (await w.services.jobs.job(job.id)).status.value == "held"
        await w.wait_job(running.id, "done")
        text = await press(w, item, "Approve", w.moderator)
        assert text.endswith("approved: the job runs now.")
        await w.wait_job(job.id, "done")


async def test_an_approval_after_the_channel_was_closed_to_image_commands_is_refused(tmp_path):
    """An admin closes the member's channel to image commands (/settings channel) while the
    request waits: an Approve would run it and post the result where the server no longer
    allows images, charging the member for it."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        job = await held(w, "a castle at dawn")
        item = await item_message(w, job)
        await ask(w, w.admin, "settings channel", {"channel": w.channel, "allowed": False})

        text = await press(w, item, "Approve", w.moderator)
        assert text == (
            f"Image commands are no longer allowed in <#{w.channel}>; reject the job instead."
        )
        assert (await w.services.jobs.job(job.id)).status.value == "held"
        assert w.sim.submissions == []
        await press(w, item, "Reject", w.moderator)
        await w.wait_job(job.id, "rejected")
        assert await w.available() == 1000


@pytest.mark.parametrize("change", ["deleted", "no send"])
async def test_an_approval_where_the_result_can_no_longer_be_posted_is_refused(tmp_path, change):
    """The member's channel is deleted, or the bot loses Send Messages there, while the
    request waits: an Approve would charge the member for images that cannot be posted in
    their channel. The moderator is told why; with the permission back it runs."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        job = await held(w, "a castle at dawn")
        item = await item_message(w, job)
        if change == "deleted":
            delete_channel(w, w.channel)
            why = "it was deleted"
        else:
            w.fake.set_bot_channel_permissions(w.channel, deny=SEND_MESSAGES)
            why = "I need Send Messages there"
        await w.fake.settle()

        text = await press(w, item, "Approve", w.moderator)
        assert text == (
            f"The result cannot be posted in <#{w.channel}> any more ({why}); "
            "reject the job, or fix that and approve it again."
        )
        assert (await w.services.jobs.job(job.id)).status.value == "held"
        assert w.sim.submissions == []
        assert await w.available() == 1000 - COST  # still only held
        if change == "no send":
            w.fake.set_bot_channel_permissions(w.channel)
            await w.fake.settle()
            assert (await press(w, item, "Approve", w.moderator)).endswith("the job runs now.")
            await w.wait_result(job.id)
        else:
            await press(w, item, "Reject", w.moderator)
            await w.wait_job(job.id, "rejected")
            assert await w.available() == 1000


async def test_an_approval_after_the_channel_level_was_lowered_asks_for_no_mature_content(
    tmp_path,
):
    """An admin lowers the member's age-restricted channel to PG-13 while the request waits:
    the approved job runs for the channel as it is now (allowMatureContent false), and an R
    result goes to the moderators, not the channel."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        after_dark = nsfw_channel(w)
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        handle = await request(w, "a castle at night [sim:r]", channel=after_dark)
        job = await started_job(w, handle)
        job = await w.wait_job(job.id, "held")
        assert job.max_rating == "xxx"
        item = await item_message(w, job)
        await ask(w, w.admin, "settings mature", {"level": "pg13", "channel": after_dark})

        assert (await press(w, item, "Approve", w.moderator)).endswith("the job runs now.")
        job = await w.wait_job(job.id, "blocked", "done")
        [submitted] = w.sim.submissions
        assert submitted["allowMatureContent"] is False
        assert job.max_rating == "pg13" and job.status.value == "blocked"
        assert not [m for m in w.fake.channel_messages(after_dark) if "result of job" in text_of(m)]
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.kind == "mature"


async def test_an_approval_in_a_thread_is_not_refused_when_discord_cannot_say_its_parent(
    tmp_path,
):
    """Image commands are allowed only in a channel; the request came from a thread of it.
    When Discord cannot tell the thread's parent at the approval (a passing fault), the
    thread alone is not on the list: that must not read as 'no longer allowed'."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.admin, "settings channel", {"channel": w.channel, "allowed": True})
        thread = w.fake.add_thread(w.channel, "castles", owner_id=w.member)
        await w.fake.settle()
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        handle = await request(w, "a castle at dawn", channel=thread)
        job = await w.wait_job((await started_job(w, handle)).id, "held")

        decisions = w.bot.engine.decisions
        approved = await w.services.db.write(decisions.approve_in, job.id, None)
        assert approved.status.value == "queued"


async def test_an_approval_in_a_thread_locked_meanwhile_is_refused(tmp_path):
    """A moderator locks the member's thread while the request waits: the bot (no Manage
    Threads) cannot post there, so an Approve would charge the member for a result that
    cannot go where they asked. The moderator is told why; unlocked, it runs."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        thread = w.fake.add_thread(w.channel, "castles", owner_id=w.member)
        await w.fake.settle()
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        handle = await request(w, "a castle at dawn", channel=thread)
        job = await w.wait_job((await started_job(w, handle)).id, "held")
        item = await item_message(w, job)
        w.fake.archive_thread(thread, locked=True)
        await w.fake.settle()

        text = await press(w, item, "Approve", w.moderator)
        assert text == (
            f"The result cannot be posted in <#{thread}> any more (it is locked); "
            "reject the job, or fix that and approve it again."
        )
        assert (await w.services.jobs.job(job.id)).status.value == "held"
        assert w.sim.submissions == [] and await w.available() == 1000 - COST

        thread_now = w.fake.world.channel(thread)
        thread_now.archived = thread_now.locked = False
        w.fake.update_thread(thread_now)
        await w.fake.settle()
        assert (await press(w, item, "Approve", w.moderator)).endswith("the job runs now.")
        result = await w.fake.wait_for(
            lambda: [m for m in w.fake.channel_messages(thread) if "result of job" in text_of(m)],
            what="the result in the thread",
        )
        assert len(result) == 1
