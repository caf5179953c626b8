"""Results rated above what their channel allows, end to end: the real bot against the fake
Discord (channels with and without Discord's age restriction, threads) and the simulator over
HTTP. Such a result never reaches the channel: the member is told privately, moderators get
it in their queue and release it (release channel or DM), refund it or dismiss it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.discord_adapter.bot import ImageBot
from bot.release import Releases
from bot.review import Action
from bot.store import db as dbmod
from tests.discord.harness import MANAGE_MESSAGES, field_value, text_of, world
from tests.discord_admin.helpers import (
    COST,
    ask,
    click,
    item_message,
    mod_channel,
    press,
    request,
    started_job,
)
from tests.fakes import rest as fake_rest
from tests.fakes.errors import ApiError
from tests.safety.helpers import nsfw_channel, private_note, seen_by_member
from tests.store.read_only import write_locked

NOTICE = "rated R and this channel allows up to PG-13"


async def test_an_r_result_in_a_channel_without_age_restriction_goes_to_review(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        handle = await request(w, "a fox at night [sim:r]")
        job = await started_job(w, handle)
        job = await w.wait_job(job.id, "blocked")

        [submitted] = w.sim.submissions
        assert submitted["allowMatureContent"] is False  # the orchestrator withholds it
        assert w.results_of(job.id) == []  # never posted in the channel
        status = await w.wait_status(job, "Not posted in this channel")
        assert "rated" not in text_of(status).lower()  # the channel learns nothing more
        assert NOTICE in await private_note(w, handle, NOTICE)
        # The work was done: the member pays what the orchestrator charged, for now.
        assert job.charged == COST and await w.available() == 1000 - COST

        item = await item_message(w, job)
        assert "Kept from its channel" in text_of(item)
        assert field_value(item, "Source") == (
            f"**Rated above the channel's level**\nRated R; <#{w.channel}> allows up to PG-13.\n"
            "No release channel is set (/settings mature): release by DM only."
        )
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and (stored.kind, stored.source) == ("mature", "mature")
        assert stored.details == {"rating": "r", "allowed": "pg13", "channel": w.channel}
        text = await ask(w, w.moderator, "mod queue", {"source": "mature"})
        assert f"#{stored.id} mature (rated R) · <@{w.member}>" in text
        assert await ask(w, w.moderator, "mod queue", {"source": "premoderation"}) == (
            "Nothing waits for review (AI pre-moderation)."
        )
        assert "Kept" not in seen_by_member(w, handle, [w.channel])


async def test_the_same_request_in_an_age_restricted_channel_is_posted(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        after_dark = nsfw_channel(w)
        handle = await request(w, "a fox at night [sim:r]", channel=after_dark)
        job = await started_job(w, handle)
        job = await w.wait_job(job.id, "done")
        [submitted] = w.sim.submissions
        assert submitted["allowMatureContent"] is True
        assert job.max_rating == "xxx"
        assert [m for m in w.fake.channel_messages(after_dark) if "result of job" in text_of(m)]
        assert await w.services.moderation.item_for_job(job.id) is None


async def kept(w, prompt: str = "a fox at night [sim:r]", channel: int | None = None):
    """A request whose result is kept from its channel; (the job, its review item message)."""
    handle = await request(w, prompt, channel=channel)
    job = await started_job(w, handle)
    job = await w.wait_job(job.id, "blocked")
    return job, await item_message(w, job)


async def test_threads_follow_their_parent_channel(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        sfw_thread = w.fake.add_thread(w.channel, "fox talk", owner_id=w.member)
        nsfw_thread = w.fake.add_thread(nsfw_channel(w), "fox talk after dark", owner_id=w.member)
        await w.fake.settle()

        job, _ = await kept(w, channel=sfw_thread)
        assert job.max_rating == "pg13" and w.sim.submissions[-1]["allowMatureContent"] is False
        handle = await request(w, "a fox at night [sim:r]", channel=nsfw_thread)
        posted = await w.wait_job((await started_job(w, handle)).id, "done")
        assert posted.max_rating == "xxx" and w.sim.submissions[-1]["allowMatureContent"] is True
        results = [m for m in w.fake.channel_messages(nsfw_thread) if "result of job" in text_of(m)]
        assert len(results) == 1
        assert not [m for m in w.fake.channel_messages(sfw_thread) if m.get("attachments")]


async def test_a_moderator_sends_it_by_dm_and_the_charge_stands(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        job, item = await kept(w)
        assert "Release" not in _labels(w, item)  # no release channel: DM only
        text = await press(w, item, "Send by DM", w.moderator)
        assert text == f"Review #1: sent to <@{w.member}> by DM."
        [dm] = [m for m in w.fake.dm_messages(w.member) if m.get("attachments")]
        assert f"<#{w.channel}>" in dm["content"] and f"result of job {job.id}" in text_of(dm)
        assert w.results_of(job.id) == []  # still never in the channel
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.status == "released"
        assert await w.available() == 1000 - COST
        await w.wait_status(job, "sent the result to you by DM")
        assert _labels(w, item) == {"Strike", "Ban"}  # decided: no second release


async def test_a_moderator_cannot_release_their_own_kept_result(tmp_path):
    """What was kept from a moderator's own request is for another moderator to show: releasing
    it (or sending it to oneself by DM) would pass the channel's level unchecked."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        other = w.fake.add_member(w.guild, "mod2", permissions=MANAGE_MESSAGES)
        await w.grant(1000, w.moderator)
        handle = await request(w, "a fox at night [sim:r]", w.moderator)
        job = await w.wait_job((await started_job(w, handle)).id, "blocked")
        item = await item_message(w, job)
        for label, verb in (("Release", "release it"), ("Send by DM", "send it by DM")):
            text = await press(w, item, label, w.moderator)
            assert text == (
                f"This is your own request: another moderator (or an admin) must {verb}."
            )
        assert w.fake.channel_messages(gallery) == []
        assert not [m for m in w.fake.dm_messages(w.moderator) if m.get("attachments")]
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.open
        assert await press(w, item, "Release", other) == f"Review #1: released in <#{gallery}>."
        assert len(w.fake.channel_messages(gallery)) == 1


async def test_a_release_goes_to_the_age_restricted_channel_the_admin_chose(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        text = await ask(w, w.admin, "settings mature", {"release-channel": w.channel})
        assert "is not age-restricted in Discord" in text
        text = await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        assert f"can be released to: <#{gallery}>" in text
        job, item = await kept(w)
        assert f"Release posts it in <#{gallery}>." in field_value(item, "Source")
        text = await press(w, item, "Release", w.moderator)
        assert text == f"Review #1: released in <#{gallery}>."
        [post] = w.fake.channel_messages(gallery)
        assert post["content"].startswith(f"<@{w.member}> a moderator released your result")
        assert post["attachments"] and f"result of job {job.id}" in text_of(post)
        refreshed = w.fake.message(int(item["id"]))
        assert "Released to the release channel by" in text_of(refreshed)
        assert _labels(w, refreshed) == {"Strike", "Ban"}

        both = {"release-channel": gallery, "release-dm-only": True}
        text = await ask(w, w.admin, "settings mature", both)
        assert "release-dm-only" in text and "not both" in text
        text = await ask(w, w.admin, "settings mature", {"release-dm-only": True})
        assert "can be released to: not set (DM only)" in text
        _, second = await kept(w)
        assert "Release" not in _labels(w, second)  # DM only again
        text = await press(w, second, "Send by DM", w.moderator)
        assert text == f"Review #2: sent to <@{w.member}> by DM."
        assert len(w.fake.channel_messages(gallery)) == 1


async def test_a_refused_release_channel_changes_nothing_else_asked_with_it(tmp_path):
    """/settings mature level:PG release-channel:#art (not age-restricted): the admin reads
    that the release channel was refused, so the level asked in the same command must not
    have been changed either (it was, unseen: PG-13 results then stopped being posted)."""
    async with world(tmp_path) as w:
        text = await ask(
            w, w.admin, "settings mature", {"level": "pg", "release-channel": w.channel}
        )
        assert "**release-channel**" in text and "is not age-restricted in Discord" in text
        shown = await ask(w, w.admin, "settings show")
        assert "Results shown: up to PG-13 where Discord's age restriction is off" in shown
        assert (await w.services.safety.settings(w.guild)).max_rating is None


async def test_a_release_cut_short_by_a_stop_can_be_made_again_after_the_start(tmp_path):
    """The bot stops while a moderator's release is being posted: the item opens again (not
    "released" with nothing posted), and after the start a moderator releases it, once."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        job, item = await kept(w)
        w.bot.answer_wait = 0  # a stop that does not wait for it (or one that timed out)
        w.fake.hold_requests("POST", rf"/channels/{gallery}/messages$")
        await click(w, item, "Release", w.moderator)
        await w.fake.wait_for(
            lambda: any(
                c.method == "POST" and c.path.endswith(f"/channels/{gallery}/messages")
                for c in w.fake.calls  # (the look for an earlier post GETs the same path)
            ),
            what="the release on its way",
        )
        w.fake.gates.clear()  # that post never completes: the process is gone
        await w.restart_bot()
        reopened = await w.services.moderation.item_for_job(job.id)
        assert reopened is not None and reopened.open
        assert w.fake.channel_messages(gallery) == []
        text = await press(w, w.fake.message(int(item["id"])), "Release", w.moderator)
        assert text == f"Review #1: released in <#{gallery}>."
        [post] = w.fake.channel_messages(gallery)
        assert f"result of job {job.id}" in text_of(post)


async def test_a_release_whose_process_died_mid_post_is_posted_at_the_next_start(tmp_path):
    """The decision is recorded, then the process dies while posting (its task gone, nothing
    handled): the item says released with nothing posted. The next start posts it, once."""
    async with world(tmp_path) as w:
        gallery, job, item, open_item = await release_cut_off(w)
        left = await w.services.moderation.item(open_item.id)
        assert left is not None and left.status == "released"
        assert w.fake.channel_messages(gallery) == []

        await w.restart_bot()
        await w.fake.wait_for(
            lambda: w.fake.channel_messages(gallery), what="the release posted at the start"
        )
        [post] = w.fake.channel_messages(gallery)
        assert f"result of job {job.id}" in text_of(post)
        await w.wait_status(job, "posted the result in")  # the member is told
        await w.fake.wait_for(
            lambda: (
                "Released to the release channel by" in text_of(w.fake.message(int(item["id"])))
            ),
            what="the item showing the release",
        )
        await w.restart_bot()  # done once: the next start has nothing to resume
        await w.wait_idle()
        assert len(w.fake.channel_messages(gallery)) == 1


async def test_a_release_that_cannot_be_posted_opens_the_item_again(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        job, item = await kept(w)
        w.fake.set_channel_nsfw(gallery, False)  # someone lifted the age restriction since
        await w.fake.settle()
        text = await press(w, item, "Release", w.moderator)
        assert "no longer age-restricted" in text and "the item is open again" in text
        assert w.fake.channel_messages(gallery) == []
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.open
        assert await press(w, item, "Refund", w.moderator) == (
            f"Review #1: refunded {COST} Buzz to <@{w.member}>."
        )
        assert await w.available() == 1000
        await w.wait_status(job, "a moderator refunded")


async def test_dismiss_leaves_it_unposted_and_charged(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        job, item = await kept(w)
        assert await press(w, item, "Dismiss", w.moderator) == "Review #1: dismissed: no change."
        assert await w.available() == 1000 - COST
        await w.wait_status(job, "it will not be posted")


async def test_an_admin_can_lower_a_channel_below_pg13(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        text = await ask(w, w.admin, "settings mature", {"level": "x", "channel": w.channel})
        assert "can show at most PG-13" in text
        text = await ask(w, w.admin, "settings mature", {"level": "pg", "channel": w.channel})
        assert f"<#{w.channel}> PG" in text
        # PG-13 is not mature: the orchestrator returns it; the bot keeps it from the channel.
        job, item = await kept(w, "a moody portrait [sim:pg13]")
        assert job.max_rating == "pg" and "allows up to PG." in field_value(item, "Source")
        assert await press(w, item, "Send by DM", w.moderator) == (
            f"Review #1: sent to <@{w.member}> by DM."
        )
        assert [m for m in w.fake.dm_messages(w.member) if m.get("attachments")]
        # "Default" forgets the channel's own level: PG-13 results are posted there again.
        await ask(w, w.admin, "settings mature", {"level": "default", "channel": w.channel})
        handle = await request(w, "another moody portrait [sim:pg13]")
        await w.wait_job((await started_job(w, handle)).id, "done")


async def test_the_server_level_applies_everywhere_but_never_above_discord(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        after_dark = nsfw_channel(w)
        text = await ask(w, w.admin, "settings mature", {"level": "r"})
        assert "up to PG-13 where Discord's age restriction is off, up to R where it is on" in text
        handle = await request(w, "a fox at night [sim:x]", channel=after_dark)
        job = await w.wait_job((await started_job(w, handle)).id, "blocked")
        assert job.max_rating == "r"
        item = await item_message(w, job)
        assert f"Rated X; <#{after_dark}> allows up to R." in field_value(item, "Source")


def _labels(w, message) -> set[str]:
    from tests.discord.harness import buttons

    return set(buttons(w.fake.message(int(message["id"]))))


async def test_two_moderators_releasing_at_once_send_it_once(tmp_path):
    import asyncio

    from tests.discord.harness import MANAGE_MESSAGES, answer
    from tests.discord_admin.helpers import click

    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        second = w.fake.add_member(w.guild, "mod2", permissions=MANAGE_MESSAGES)
        await w.fake.settle()
        _, item = await kept(w)
        handles = await asyncio.gather(
            click(w, item, "Send by DM", w.moderator), click(w, item, "Send by DM", second)
        )
        texts = sorted([text_of(await answer(h)) for h in handles])
        assert texts[0].startswith("Already handled by <@") and texts[0].endswith("(released).")
        assert texts[1] == f"Review #1: sent to <@{w.member}> by DM."
        assert len([m for m in w.fake.dm_messages(w.member) if m.get("attachments")]) == 1
        plain = w.fake.add_member(w.guild, "eve")
        await w.fake.settle()
        _, item2 = await kept(w, "another fox [sim:x]")
        assert await press(w, item2, "Send by DM", plain) == (
            "Only moderators (Manage Messages or the moderator role) can do that."
        )


async def test_age_restriction_lifted_while_the_job_runs_keeps_an_r_result_out(tmp_path):
    """The channel's level is taken at admission, but Discord's age restriction may be lifted
    while the job runs: the result is checked against what the channel is when it ends, so an
    R result is never posted in a channel that no longer allows it."""
    from bot.civitai.simulator import Outcome

    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        after_dark = nsfw_channel(w)
        w.sim.script(Outcome(runtime=500, nsfw_level="r"), prompt="a fox at dusk")
        handle = await request(w, "a fox at dusk", channel=after_dark)
        job = await started_job(w, handle)
        assert job.max_rating == "xxx"
        await w.wait_job(job.id, "submitted", "running")
        w.fake.set_channel_nsfw(after_dark, False)  # lifted while it runs
        job = await w.wait_job(job.id, "blocked", "done")
        assert job.status.value == "blocked"
        assert w.results_of(job.id) == []
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.kind == "mature"
        assert stored.details["allowed"] == "pg13"


@pytest.mark.parametrize("in_thread", [False, True])
async def test_a_level_an_admin_lowers_while_the_job_runs_keeps_an_r_result_out(
    tmp_path, in_thread
):
    """/settings mature lowers an age-restricted channel to PG-13 while a job there runs (in
    the channel, or in a thread of it): the R result is checked against the level as it is
    when the job ends, not posted where the admin no longer allows it."""
    from bot.civitai.simulator import Outcome

    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        after_dark = nsfw_channel(w)
        where = (
            w.fake.add_thread(after_dark, "late", owner_id=w.member) if in_thread else after_dark
        )
        await w.fake.settle()
        w.sim.script(Outcome(runtime=500, nsfw_level="r"), prompt="a fox at dusk")
        job = await started_job(w, await request(w, "a fox at dusk", channel=where))
        assert job.max_rating == "xxx"
        await w.wait_job(job.id, "submitted", "running")
        text = await ask(w, w.admin, "settings mature", {"level": "pg13", "channel": after_dark})
        assert f"<#{after_dark}> PG-13" in text
        job = await w.wait_job(job.id, "blocked", "done")
        assert job.status.value == "blocked"
        assert not [m for m in w.fake.channel_messages(where) if "result of job" in text_of(m)]
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.kind == "mature"
        assert stored.details["allowed"] == "pg13"


async def test_a_release_posted_just_before_the_process_died_is_not_posted_again(tmp_path):
    """The release reaches the channel, but the process dies before its answer comes back
    (nothing recorded of the post): the next start finds the post, and does not send the
    member's result a second time."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        job, item = await kept(w)
        w.fake.hold_requests("POST", rf"/channels/{gallery}/messages$", answer_only=True)
        [open_item] = await w.services.moderation.open_items(w.guild)
        dying = asyncio.create_task(
            w.bot.review.act(w.guild, open_item.id, Action.RELEASE, w.moderator)
        )
        await w.fake.wait_for(
            lambda: w.fake.channel_messages(gallery), what="the release posted, unanswered"
        )
        dying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dying
        w.fake.gates.clear()

        await w.restart_bot()
        await w.wait_status(job, "posted the result in")  # the member is told
        await w.fake.wait_for(
            lambda: (
                "Released to the release channel by" in text_of(w.fake.message(int(item["id"])))
            ),
            what="the item showing the release",
        )
        [post] = w.fake.channel_messages(gallery)
        assert f"result of job {job.id}" in text_of(post)


async def test_a_result_kept_back_just_before_the_process_died_is_still_told(tmp_path, monkeypatch):
    """The job ends rated above its channel (settled, its review item open), and the process
    dies while the status message is being edited to say so: after the start the message
    does not say "sent to the image service" with Cancel for good, and the member still gets
    the private notice of why it was not posted."""
    lost = hang_the_not_posted_edit(monkeypatch)
    async with world(tmp_path) as w:
        handle, job = await kept_back_while_telling(w, lost)
        await w.restart_bot()

        status = await w.wait_status(job, "Not posted in this channel")
        assert "Cancel" not in _labels(w, status)
        assert NOTICE in await private_note(w, handle, NOTICE)
        assert job.charged == COST and await w.available() == 1000 - COST
        await item_message(w, job)  # the moderators have it


async def test_a_dm_release_sent_just_before_the_process_died_is_not_sent_again(tmp_path):
    """As above, by DM: the member's DMs are looked at before sending it again."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        job, _ = await kept(w)
        w.fake.hold_requests("POST", r"/channels/\d+/messages$", answer_only=True)
        [open_item] = await w.services.moderation.open_items(w.guild)
        dying = asyncio.create_task(
            w.bot.review.act(w.guild, open_item.id, Action.SEND_DM, w.moderator)
        )
        await w.fake.wait_for(lambda: w.fake.dm_messages(w.member), what="the DM, unanswered")
        dying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dying
        w.fake.gates.clear()

        await w.restart_bot()
        await w.wait_status(job, "sent the result to you by DM")
        [dm] = [m for m in w.fake.dm_messages(w.member) if m.get("attachments")]
        assert f"result of job {job.id}" in text_of(dm)


async def test_a_thread_that_cannot_be_read_at_the_end_keeps_its_parents_level(
    tmp_path, monkeypatch
):
    """The server allows PG-13 and #after-dark, an age-restricted channel, X. A job in a
    thread of #after-dark ends R, and Discord will not show the bot the thread any more (it was
    deleted, say): the result is not kept back as if the thread had the server's level; it
    goes to the member as any result whose channel is gone."""
    from bot.civitai.simulator import Outcome

    armed: list[int] = []
    original = fake_rest.RestApi.get_channel

    async def gone(self, request):
        if int(request.match_info["channel_id"]) in armed:
            raise ApiError(404, 10003, "Unknown Channel")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "get_channel", gone)
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        after_dark = nsfw_channel(w)
        await ask(w, w.admin, "settings mature", {"level": "pg13"})
        await ask(w, w.admin, "settings mature", {"level": "xxx", "channel": after_dark})
        thread = w.fake.world.new_thread(w.fake.world.channel(after_dark), "late", w.member).id
        w.sim.script(Outcome(runtime=1000, nsfw_level="r"), prompt="a fox at midnight")
        job = await started_job(w, await request(w, "a fox at midnight", channel=thread))
        assert job.max_rating == "xxx"
        armed.append(thread)
        job = await w.wait_job(job.id, "blocked", "done", "failed", timeout=30)
        assert w.bot.get_channel(thread) is None, "the bot must not know the thread"
        assert job.status.value == "done", job.error
        assert await w.services.moderation.item_for_job(job.id) is None


async def test_a_kept_back_result_decided_before_the_restart_is_not_told_as_waiting(
    tmp_path, monkeypatch
):
    """The process dies while telling a kept-back ending; before it starts again a moderator
    dismisses the item. The start must not tell the member their result "will be reviewed"
    (it was), nor put the status back to saying so."""
    lost = hang_the_not_posted_edit(monkeypatch)
    async with world(tmp_path) as w:
        handle, job = await kept_back_while_telling(w, lost)
        item = await w.services.moderation.item_for_job(job.id)
        assert item is not None
        # Its status edit waits behind the lost one: the decision commits, the telling dies.
        deciding = asyncio.create_task(
            w.bot.review.act(w.guild, item.id, Action.DISMISS, w.moderator)
        )

        async def decided() -> bool:
            found = await w.services.moderation.item_for_job(job.id)
            return found is not None and not found.open

        while not await decided():
            await asyncio.sleep(0.02)
        await w.restart_bot()
        deciding.cancel()
        while await w.services.jobs.untold():  # the start's pass over untold endings is done
            await asyncio.sleep(0.02)
        await w.fake.settle()
        assert NOTICE not in seen_by_member(w, handle, [w.channel])
        assert job.charged == COST and await w.available() == 1000 - COST


def hang_the_not_posted_edit(monkeypatch) -> asyncio.Event:
    """The first status edit saying "Not posted" never gets Discord's answer (the process
    dies meanwhile); the event is set once it is on its way."""
    lost = asyncio.Event()
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        if not lost.is_set() and b"Not posted" in await request.read():
            lost.set()
            await asyncio.Event().wait()  # the process dies before Discord answers
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    return lost


async def kept_back_while_telling(w, lost: asyncio.Event):
    """A job whose R result is kept from its channel, its ending's status edit hanging."""
    await w.set_guild(mod_channel_id=mod_channel(w))
    await w.grant(1000)
    handle = await request(w, "a fox at night [sim:r]")
    job = await w.wait_job((await started_job(w, handle)).id, "blocked")
    await w.fake.wait_for(lost.is_set, what="the ending's status edit on its way")
    return handle, job


async def test_a_release_is_refused_above_the_level_the_admin_set_for_the_release_channel(
    tmp_path,
):
    """The admin set the release channel's own level to PG-13 (/settings mature level
    channel): an R result is not posted there, the moderator is told why and what to do
    instead, and the item stays open. With the channel's level raised it is released."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        await ask(w, w.admin, "settings mature", {"level": "pg13", "channel": gallery})
        job, item = await kept(w)

        text = await press(w, item, "Release", w.moderator)
        assert text == (
            f"<#{gallery}> allows up to PG-13 (/settings mature) and this result is rated R: "
            "send it by DM, or raise that channel's level."
        )
        assert w.fake.channel_messages(gallery) == []
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.open
        await ask(w, w.admin, "settings mature", {"level": "r", "channel": gallery})
        text = await press(w, item, "Release", w.moderator)
        assert text == f"Review #1: released in <#{gallery}>."
        assert len(w.fake.channel_messages(gallery)) == 1


async def test_a_release_is_refused_above_the_servers_level(tmp_path):
    """The admin allows up to R in the whole server (/settings mature level:R); the release
    channel has no level of its own, so R is its level too: an X result is not posted there
    (it was: only a level set on the release channel itself was looked at)."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery, "level": "r"})
        _, item = await kept(w, "a fox at night [sim:x]")
        text = await press(w, item, "Release", w.moderator)
        assert text == (
            f"<#{gallery}> allows up to R (/settings mature) and this result is rated X: "
            "send it by DM, or raise that channel's level."
        )
        assert w.fake.channel_messages(gallery) == []
        await ask(w, w.admin, "settings mature", {"level": "xxx", "channel": gallery})
        assert await press(w, item, "Release", w.moderator) == (
            f"Review #1: released in <#{gallery}>."
        )


async def test_a_result_withheld_as_mature_with_no_rating_counts_as_r_for_the_release_channel(
    tmp_path,
):
    """Upstream withheld the result as mature content but rated it with nothing usable ("na"):
    it is at least R, so a release channel the admin set to PG-13 does not take it."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        await ask(w, w.admin, "settings mature", {"level": "pg13", "channel": gallery})
        job, item = await kept(w)
        await w.services.db.write(
            lambda tx: tx.execute(
                "UPDATE review_items SET details = json_set(details, '$.rating', 'na')"
                " WHERE job_id = ?",
                (job.id,),
            )
        )

        text = await press(w, item, "Release", w.moderator)
        assert text.startswith(f"<#{gallery}> allows up to PG-13 (/settings mature)")
        assert w.fake.channel_messages(gallery) == []


async def test_a_release_posted_while_the_database_is_locked_is_reported_as_released(
    tmp_path, monkeypatch, caplog
):
    """The release reaches the gallery, then recording it meets an operator's sqlite3 shell
    holding the write lock: the moderator is told it was released (not that nothing was
    done), the member is told, and the next start does not post it again."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)  # 10 s in production
    monkeypatch.setattr(Releases, "record_retry", 0.05)  # 5 s in production
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        job, item = await kept(w)
        gate = w.fake.hold_requests("POST", rf"/channels/{gallery}/messages$", answer_only=True)
        pressed = asyncio.create_task(press(w, item, "Release", w.moderator))
        await w.fake.wait_for(lambda: w.fake.channel_messages(gallery), what="the release")
        with write_locked(tmp_path / "bot.sqlite3"):
            gate.set()
            text = await asyncio.wait_for(pressed, 30)
        assert text == f"Review #1: released in <#{gallery}>."
        await w.wait_status(job, "posted the result in")  # told once it is recorded
        await w.restart_bot()  # recorded before: nothing to post again
        await w.wait_idle()
        assert len(w.fake.channel_messages(gallery)) == 1
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_start_while_the_database_is_locked_resumes_the_release_once_it_is_free(
    tmp_path, monkeypatch, caplog
):
    """A release left unposted by a dying process, and the next start meets an operator's
    sqlite3 shell holding the write lock: the start does not end in a traceback with the
    release forgotten; it is posted once the lock is gone."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)  # 10 s in production
    async with world(tmp_path) as w:
        gallery, job, item, _ = await release_cut_off(w)

        before = item_edits(w, item)
        monkeypatch.setattr(ImageBot, "start_retry", 0.05)
        with write_locked(tmp_path / "bot.sqlite3"):
            restarting = asyncio.create_task(w.restart_bot())
            await w.fake.wait_for(
                lambda: any("waiting to start" in r.getMessage() for r in caplog.records),
                what="the start waiting for the lock",
            )
        await asyncio.wait_for(restarting, 30)
        await w.fake.wait_for(
            lambda: w.fake.channel_messages(gallery), what="the release posted", timeout=30
        )
        await w.wait_status(job, "posted the result in")
        await w.fake.wait_for(lambda: item_edits(w, item) > before, what="the item refreshed")
        assert len(w.fake.channel_messages(gallery)) == 1
    assert not [r for r in caplog.records if r.exc_info]


def item_edits(w, item) -> int:
    """How many times the review item's message was edited (a refresh shows a decision)."""
    path = f"/messages/{item['id']}"
    return sum(1 for c in w.fake.calls if c.method == "PATCH" and c.path.endswith(path))


async def test_a_start_waiting_for_a_locked_database_can_be_stopped(tmp_path, monkeypatch, caplog):
    """SIGTERM (the bot closed) while the start waits for another process's write lock: the
    start ends there, instead of waiting on for the lock and then setting up a closed bot."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)  # 10 s in production
    monkeypatch.setattr(ImageBot, "start_retry", 0.05)
    async with world(tmp_path) as w:
        with write_locked(tmp_path / "bot.sqlite3"):
            restarting = asyncio.create_task(w.restart_bot())
            await w.fake.wait_for(
                lambda: any("waiting to start" in r.getMessage() for r in caplog.records),
                what="the start waiting for the lock",
            )
            await w.bot.close()
            with pytest.raises(RuntimeError, match="returned before the bot became ready"):
                await asyncio.wait_for(restarting, 10)


async def release_cut_off(w):
    """A kept-back result released to the gallery, its process dying while the post is on
    its way (the decision recorded, nothing posted): (gallery, job, item message, item)."""
    await w.set_guild(mod_channel_id=mod_channel(w))
    await w.grant(1000)
    gallery = nsfw_channel(w, "gallery")
    await ask(w, w.admin, "settings mature", {"release-channel": gallery})
    job, item = await kept(w)
    w.fake.hold_requests("POST", rf"/channels/{gallery}/messages$")
    [open_item] = await w.services.moderation.open_items(w.guild)
    dying = asyncio.create_task(
        w.bot.review.act(w.guild, open_item.id, Action.RELEASE, w.moderator)
    )
    await w.fake.wait_for(
        lambda: any(
            c.method == "POST" and c.path.endswith(f"/channels/{gallery}/messages")
            for c in w.fake.calls  # (the look for an earlier post GETs the same path)
        ),
        what="the release on its way",
    )
    dying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    w.fake.gates.clear()  # that post never completes
    return gallery, job, item, open_item
