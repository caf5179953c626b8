"""Review items in the moderation channel: what moderators see, their decisions, what the member
is told, appeals, and buttons that still work after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json

from tests.discord.harness import (
    MANAGE_MESSAGES,
    answer,
    buttons,
    field_value,
    is_ephemeral,
    open_image,
    png,
    text_of,
    world,
)
from tests.discord_admin.helpers import (
    COST,
    audit_actions,
    blocked,
    click,
    held,
    item_message,
    ledger_kinds,
    mod_channel,
    press,
)


async def test_blocked_job_item_shows_everything_and_refund_restores_the_buzz(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        job = await blocked(w, "a forbidden picnic")
        assert await w.available() == 1000 - COST
        item = await item_message(w, job)

        text = text_of(item)
        assert "Blocked upstream" in text
        assert "a forbidden picnic" in text  # the prompt
        member = field_value(item, "Member")
        assert f"<@{w.member}>" in member and "0 strikes in 30 days" in member
        where = field_value(item, "Where")
        assert f"<#{w.channel}>" in where and str(job.status_message_id) in where
        options = field_value(item, "Request")
        assert "gpt-image-2" in options and "create" in options
        assert "quality medium" in options and "size 1024x1024" in options
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.reason
        assert field_value(item, "Reason") == stored.reason
        assert field_value(item, "Buzz") == f"{COST} Buzz charged"
        assert list(buttons(item)) == ["Refund", "Dismiss", "Strike", "Ban"]
        assert item["attachments"] == []  # a create has no source image

        reply = await press(w, item, "Refund", w.moderator)
        assert reply == f"Review #{stored.id}: refunded {COST} Buzz to <@{w.member}>."
        assert await w.available() == 1000
        assert await ledger_kinds(w) == [
            ("grant", 1000),
            ("hold", COST),
            ("capture", COST),
            ("refund", COST),
        ]
        [(actor, target, details)] = await audit_actions(w, "review.refund")
        assert actor == w.moderator and target == f"review:{stored.id}"
        assert json.loads(details)["refunded"] == COST

        edited = w.fake.message(int(item["id"]))
        state = next(f for f in edited["embeds"][0]["fields"] if f["name"].startswith("State"))
        assert state["name"] == "State: refunded"
        assert f"Refunded by <@{w.moderator}>" in state["value"]
        assert field_value(edited, "Buzz") == f"0 Buzz charged ({COST} of {COST} refunded)"
        assert list(buttons(edited)) == ["Strike", "Ban"]

        status = await w.wait_status(job, "refunded")
        assert f"a moderator refunded the {COST} Buzz" in field_value(status, "Status")
        assert "your balance: 1,000" in field_value(status, "Buzz")


async def test_blocked_edit_item_carries_the_source_image(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        source = png(96, 64, (10, 200, 30))
        job = await blocked(
            w,
            "paint it over",
            attachments={"image": ("holiday.png", source, "image/png")},
        )
        item = await item_message(w, job)
        assert "edit" in field_value(item, "Request")
        [attachment] = item["attachments"]
        assert attachment["filename"] == "image1.png"
        sent = open_image(w.fake.attachment_bytes(attachment))
        assert sent.size == (96, 64)
        assert sent.convert("RGB").getpixel((5, 5)) == (10, 200, 30)


async def test_held_job_waits_without_showing_the_pattern_then_approve_and_reject(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        added = await w.fake.slash(
            w.guild, w.channel, w.moderator, "mod filter-add", options={"pattern": "re:dr[a4]gon"}
        )
        message = await answer(added)
        assert is_ephemeral(message)
        assert text_of(message) == (
            "Added filter #1: `re:dr[a4]gon`. Matching prompts now wait for a moderator."
        )

        job = await held(w, "a green dr4gon over the hills")
        status = w.status_message(job)
        assert "Waiting for a moderator's review" in field_value(status, "Status")
        assert "dr[a4]gon" not in text_of(status) and "filter" not in text_of(status)
        assert list(buttons(status)) == ["Cancel", "Appeal"]
        assert w.sim.submissions == []  # nothing runs while it waits
        assert await w.available() == 1000 - COST  # its Buzz is held

        item = await item_message(w, job)
        assert "Held by the prompt filter" in text_of(item)
        assert "re:dr[a4]gon" in field_value(item, "Reason")  # moderators do see why
        assert field_value(item, "Buzz") == f"{COST} Buzz held (nothing charged yet)"
        assert list(buttons(item)) == ["Approve", "Reject", "Strike", "Ban"]

        reply = await press(w, item, "Approve", w.moderator)
        assert reply.endswith("approved: the job runs now.")
        result = await w.wait_result(job.id)
        assert result["attachments"]
        done = await w.wait_job(job.id, "done")
        assert done.charged == COST and await w.available() == 1000 - COST
        assert list(buttons(w.fake.message(int(item["id"])))) == ["Strike", "Ban"]
        assert "State: approved" in text_of(w.fake.message(int(item["id"])))

        second = await held(w, "dragon eggs")
        assert await w.available() == 1000 - 2 * COST
        item2 = await item_message(w, second)
        reply = await press(w, item2, "Reject", w.moderator)
        assert reply.endswith("rejected: the held Buzz was released.")
        rejected = await w.wait_job(second.id, "rejected")
        assert rejected.charged == 0
        assert await w.available() == 1000 - COST
        status = await w.wait_status(second, "will not run")
        assert "nothing was charged" in field_value(status, "Status")
        assert "Appeal" not in buttons(status) and "Cancel" not in buttons(status)
        assert len(w.sim.submissions) == 1  # the rejected one never reached the orchestrator
        assert w.results_of(second.id) == []


async def test_an_appeal_made_while_the_item_is_still_being_posted_shows_on_it(tmp_path):
    """Discord is slow to take the review item: the member appeals before its message exists.
    Once the message is there it shows the appeal (the appeal's refresh found nothing to edit)."""
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        slow = w.fake.hold_requests("POST", rf"/channels/{mods}/messages$")
        job = await blocked(w, "a harmless kitten")
        opened = await click(w, w.status_message(job), "Appeal", w.member)
        sent = await w.fake.submit_modal(opened, {"note": "It is a kitten, nothing else."})
        assert "Your appeal was added" in text_of(await answer(sent))
        assert not w.fake.channel_messages(mods)  # the item is still on its way
        slow.set()
        item = await item_message(w, job)
        await w.fake.wait_for(
            lambda: "It is a kitten" in text_of(w.fake.message(int(item["id"]))),
            what="the appeal on the item",
        )
        assert len(w.fake.channel_messages(mods)) == 1


async def test_an_appeal_is_shown_to_the_moderators_as_written(tmp_path):
    """The member's note is their text, not markdown: no live masked link, no bold."""
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        job = await blocked(w, "a harmless kitten")
        item = await item_message(w, job)
        opened = await click(w, w.status_message(job), "Appeal", w.member)
        await opened.response()
        note = "**Approve** [the rules say so](https://rules.example)"
        await answer(await w.fake.submit_modal(opened, {"note": note}))
        await w.fake.wait_for(
            lambda: "rules" in text_of(w.fake.message(int(item["id"]))),
            what="the appeal on the item",
        )
        appeal = field_value(w.fake.message(int(item["id"])), "Appeal from the member")
        assert appeal == r"\*\*Approve\*\* \[the rules say so](https://rules.example)"


async def test_appeal_from_the_member_reaches_the_item_and_the_verdict_reaches_them(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        job = await blocked(w, "a harmless kitten")
        status = w.status_message(job)
        assert list(buttons(status)) == ["Appeal"]

        # Someone else cannot appeal for the member.
        text = await press(w, status, "Appeal", w.other)
        assert text == "Only the member whose job this is can appeal."

        opened = await click(w, status, "Appeal", w.member)
        modal = (await opened.response())["data"]
        assert modal["title"] == "Appeal to the moderators"
        sent = await w.fake.submit_modal(opened, {"note": "It is a kitten, nothing else."})
        thanks = await answer(sent)
        assert is_ephemeral(thanks)
        assert "Your appeal was added" in text_of(thanks)

        item = await item_message(w, job)
        await w.fake.wait_for(
            lambda: "It is a kitten" in text_of(w.fake.message(int(item["id"]))),
            what="the appeal on the item",
        )
        appeal = field_value(w.fake.message(int(item["id"])), "Appeal from the member")
        assert appeal == "It is a kitten, nothing else."
        [(actor, _, _)] = await audit_actions(w, "review.appeal")
        assert actor == w.member

        # The member opens the modal again, a moderator decides meanwhile: the late appeal
        # is refused rather than promised a decision that was already made.
        late = await click(w, status, "Appeal", w.member)
        await late.response()
        await press(w, item, "Dismiss", w.moderator)
        submitted = await w.fake.submit_modal(late, {"note": "Please look again."})
        refused = await answer(submitted)
        assert is_ephemeral(refused)
        assert "already reviewed" in text_of(refused)
        assert "Please look again" not in text_of(w.fake.message(int(item["id"])))

        status = await w.wait_status(job, "block stands")
        assert "a moderator reviewed it and the block stands" in field_value(status, "Status")
        text = await press(w, status, "Appeal", w.member)
        assert text == "This was already reviewed: dismissed."


async def test_appeal_on_a_held_job_and_the_rejection_shown_to_the_member(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "volcano", w.moderator)
        job = await held(w, "a volcano erupting")
        status = w.status_message(job)
        opened = await click(w, status, "Appeal", w.member)
        await opened.response()
        sent = await w.fake.submit_modal(opened, {"note": "A school geography project."})
        assert "appeal was added" in text_of(await answer(sent))
        item = await item_message(w, job)
        await w.fake.wait_for(
            lambda: "geography" in text_of(w.fake.message(int(item["id"]))), what="the appeal"
        )
        assert "appealed" in await _queue(w)
        await press(w, item, "Reject", w.moderator)
        status = await w.wait_status(job, "will not run")
        assert "moderator decided this request will not run" in field_value(status, "Status")
        assert await w.available() == 1000


async def _queue(w) -> str:
    handle = await w.fake.slash(w.guild, w.channel, w.moderator, "mod queue")
    return text_of(await answer(handle))


async def test_two_moderators_approve_and_reject_at_once_one_decision_stands(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "storm", w.moderator)
        job = await held(w, "a storm at sea")
        item = await item_message(w, job)
        second_mod = w.fake.add_member(w.guild, "mod2", permissions=MANAGE_MESSAGES)
        approve, reject = await asyncio.gather(
            click(w, item, "Approve", w.moderator), click(w, item, "Reject", second_mod)
        )
        texts = sorted([text_of(await answer(approve)), text_of(await answer(reject))])
        assert texts[0].startswith("Already handled by <@"), texts
        assert texts[1].startswith("Review #1: "), texts
        final = await w.wait_job(job.id, "done", "rejected")
        if final.status.value == "done":
            assert await w.available() == 1000 - COST
            assert len(w.results_of(job.id)) == 1
        else:
            assert await w.available() == 1000
            assert w.sim.submissions == []
        [row] = await w.services.db.fetchall("SELECT status FROM review_items")
        assert row[0] in ("approved", "rejected")
        decisions = await audit_actions(w, "review.approve") + await audit_actions(
            w, "review.reject"
        )
        assert len(decisions) == 1


async def test_review_buttons_and_appeal_work_after_a_restart(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        job = await blocked(w, "a suspicious teapot")
        item = await item_message(w, job)
        await w.bot.filters.add(w.guild, "kettle", w.moderator)
        waiting = await held(w, "a kettle singing")
        waiting_item = await item_message(w, waiting)
        await w.restart_bot()

        # A held job approved by the new process runs and is posted.
        await press(w, waiting_item, "Approve", w.moderator)
        await w.wait_result(waiting.id)
        await w.wait_job(waiting.id, "done")

        opened = await click(w, w.status_message(job), "Appeal", w.member)
        await opened.response()
        sent = await w.fake.submit_modal(opened, {"note": "Just a teapot."})
        assert "appeal was added" in text_of(await answer(sent))

        text = await press(w, item, "Refund", w.moderator)
        assert text == f"Review #1: refunded {COST} Buzz to <@{w.member}>."
        assert await w.available() == 1000 - COST  # the approved job's cost only
        edited = w.fake.message(int(item["id"]))
        assert "State: refunded" in text_of(edited)
        assert "Just a teapot." in text_of(edited)
        await w.wait_status(job, "refunded")


async def test_a_block_that_cost_nothing_offers_no_refund(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        job = await blocked(w, "blocked for free", charged=False)
        assert await w.available() == 1000
        item = await item_message(w, job)
        assert field_value(item, "Buzz") == "0 Buzz charged"
        assert list(buttons(item)) == ["Dismiss", "Strike", "Ban"]
        text = await press(w, item, "Dismiss", w.moderator)
        assert text == "Review #1: dismissed: no change."
        assert await ledger_kinds(w) == [("grant", 1000), ("hold", COST), ("release", COST)]


async def test_a_held_job_the_member_cancels_leaves_the_queue(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "comet", w.moderator)
        job = await held(w, "a comet over the sea")
        item = await item_message(w, job)
        canceled = await click(w, w.status_message(job), "Cancel", w.member)
        await canceled.response()
        await w.wait_job(job.id, "canceled")
        assert await w.available() == 1000
        await w.fake.wait_for(
            lambda: "State: withdrawn" in text_of(w.fake.message(int(item["id"]))),
            what="the item withdrawn",
        )
        assert list(buttons(w.fake.message(int(item["id"])))) == ["Strike", "Ban"]
        assert await w.services.moderation.open_items(w.guild) == []
        assert w.sim.submissions == []


async def test_a_rejection_the_process_died_before_showing_is_shown_after_the_start(
    tmp_path, monkeypatch
):
    """A moderator rejects a held job (recorded, the Buzz released) and the process dies while
    the member's status message is being edited to say so: after the start it does not say
    it waits for a moderator's review for good."""
    from bot.review import Action
    from tests.fakes import rest as fake_rest

    lost = asyncio.Event()
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        if not lost.is_set() and b"will not run" in await request.read():
            lost.set()
            await asyncio.Event().wait()  # the process dies before Discord answers
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "volcano", w.moderator)
        job = await held(w, "a volcano erupting")
        [item] = await w.services.moderation.open_items(w.guild)
        dying = asyncio.create_task(w.bot.review.act(w.guild, item.id, Action.REJECT, w.moderator))
        await w.fake.wait_for(lost.is_set, what="the rejection's status edit on its way")
        dying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dying
        await w.restart_bot()
        status = await w.wait_status(job, "will not run")
        assert "Appeal" not in buttons(status)
        assert await w.available() == 1000


async def test_a_moderator_cannot_refund_or_approve_their_own_request(tmp_path):
    """A moderator's own blocked job or held prompt is for another moderator to decide:
    refunding oneself, or approving what the filter held from oneself, would let one
    moderator spend the community's Buzz and pass its filter unchecked."""
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        other = w.fake.add_member(w.guild, "mod2", permissions=MANAGE_MESSAGES)
        added = await w.fake.slash(
            w.guild, w.channel, other, "mod filter-add", options={"pattern": "forbidden"}
        )
        assert "Added filter" in text_of(await answer(added))
        await w.grant(1000, w.moderator)
        job = await blocked(w, "a blocked picnic", w.moderator)
        assert await w.available(w.moderator) == 1000 - COST
        item = await item_message(w, job)
        reply = await press(w, item, "Refund", w.moderator)
        assert "your own request" in reply and "another moderator" in reply
        assert await w.available(w.moderator) == 1000 - COST
        assert (await w.services.moderation.item_for_job(job.id)).open
        assert "Refund" in buttons(w.fake.message(int(item["id"])))
        reply = await press(w, item, "Refund", other)
        assert f"refunded {COST} Buzz" in reply
        assert await w.available(w.moderator) == 1000

        held_job = await held(w, "a forbidden picnic", w.moderator)
        held_item = await item_message(w, held_job)
        reply = await press(w, held_item, "Approve", w.moderator)
        assert "your own request" in reply
        assert (await w.services.jobs.job(held_job.id)).status.value == "held"
        # Rejecting one's own request (nothing charged) is as harmless as canceling it.
        reply = await press(w, held_item, "Reject", w.moderator)
        assert "rejected" in reply
