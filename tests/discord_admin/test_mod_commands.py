"""/mod commands and the review items' sanctions: strikes that ban automatically, bans that
expire, the Ban button's modal, and the prompt filter."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.discord.harness import (
    MANAGE_MESSAGES,
    answer,
    buttons,
    field_value,
    is_ephemeral,
    text_of,
    world,
)
from tests.discord_admin.helpers import (
    COST,
    Clock,
    ask,
    blocked,
    click,
    held,
    item_message,
    jobs_with_items,
    join,
    mod_channel,
    press,
    request,
    started_job,
)
from tests.fakes import DriverError


async def refused_as_banned(w, member: int | None = None) -> str:
    """A request from a banned member: refused privately, nothing held or sent."""
    jobs_before = len(await w.jobs())
    submissions = len(w.sim.submissions)
    balance = await w.available(member)
    handle = await request(w, "anything at all", member)
    message = await answer(handle)
    assert is_ephemeral(message), text_of(message)
    assert len(await w.jobs()) == jobs_before
    assert len(w.sim.submissions) == submissions
    assert await w.available(member) == balance
    assert await w.services.db.fetchone("SELECT 1 FROM holds WHERE settled_at IS NULL") is None
    return text_of(message)


async def test_strikes_ban_automatically_and_a_second_strike_on_an_item_is_refused(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        text = await ask(w, w.admin, "settings strikes", {"count": 2, "days": 30})
        assert "Automatic ban: 2 strikes within 30 days" in text

        first = await item_message(w, await blocked(w, "first bad idea"))
        mod2 = w.fake.add_member(w.guild, "mod2", permissions=MANAGE_MESSAGES)
        # Two moderators press Strike on the same item at once: one strike.
        a, b = await asyncio.gather(
            click(w, first, "Strike", w.moderator), click(w, first, "Strike", mod2)
        )
        texts = sorted([text_of(await answer(a)), text_of(await answer(b))])
        assert texts[0].startswith("A strike was already given for this item by <@"), texts
        assert texts[1] == f"Review #1: strike for <@{w.member}> (1 in 30 days).", texts
        assert await w.services.moderation.active_ban(w.guild, w.member) is None
        refreshed = w.fake.message(int(first["id"]))
        assert "Strike" not in buttons(refreshed)
        assert "1 strike in 30 days" in field_value(refreshed, "Member")

        second = await item_message(w, await blocked(w, "second bad idea"))
        assert "1 strike in 30 days" in field_value(second, "Member")
        text = await press(w, second, "Strike", w.moderator)
        assert text == (
            f"Review #2: strike for <@{w.member}> (2 in 30 days); "
            "automatically banned from the bot here."
        )
        ban = await w.services.moderation.active_ban(w.guild, w.member)
        assert ban is not None and ban.expires_at is None

        text = await refused_as_banned(w)
        assert "banned from using the bot here" in text

        summary = await ask(w, w.moderator, "mod strikes", {"member": w.member})
        assert "2 strike(s) in the last 30 days; 2 in all." in summary
        assert "Automatic ban at 2 within 30 days." in summary
        assert "Banned until unbanned: automatic: 2 strikes in 30 days" in summary

        text = await ask(w, w.moderator, "mod unban", {"member": w.member})
        assert text == f"<@{w.member}> can use the bot again."
        text = await ask(w, w.moderator, "mod unban", {"member": w.member})
        assert text == f"<@{w.member}> was not banned here."
        job = await started_job(w, await request(w, "a fresh start"))
        await w.wait_job(job.id, "done")


async def test_a_ban_with_days_expires_when_the_clock_moves(tmp_path):
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.grant(1000)
        text = await ask(w, w.moderator, "mod ban", {"member": w.member, "days": 1})
        until = clock.now + timedelta(days=1)
        assert text == (
            f"<@{w.member}> can no longer use the bot here until {until:%Y-%m-%d %H:%M} UTC."
        )

        text = await refused_as_banned(w)
        assert "banned from using the bot here until" in text

        clock.advance(days=2)
        job = await started_job(w, await request(w, "back again"))
        job = await w.wait_job(job.id, "done")
        assert job.charged == COST
        assert await w.available() == 1000 - COST


async def test_mod_ban_days_outside_the_range_cannot_be_sent(tmp_path):
    async with world(tmp_path) as w:
        [mod] = [c for c in w.fake.commands[w.guild] if c["name"] == "mod"]
        [ban] = [o for o in mod["options"] if o["name"] == "ban"]
        days = next(o for o in ban["options"] if o["name"] == "days")
        assert (days["min_value"], days["max_value"]) == (1, 3650)
        for bad in (0, 3651):
            with pytest.raises(DriverError, match="outside registered range"):
                await w.fake.slash(
                    w.guild, w.channel, w.moderator, "mod ban", {"member": w.member, "days": bad}
                )
        assert await w.services.moderation.active_ban(w.guild, w.member) is None


async def test_ban_button_modal_refuses_days_outside_the_range(tmp_path):
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        item = await item_message(w, await blocked(w, "something to ban for"))

        # "²" passes str.isdigit() but is not a number int() can read.
        for bad in ("0", "abc", "3651", "-1", "²"):
            opened = await click(w, item, "Ban", w.moderator)
            modal = (await opened.response())["data"]
            assert modal["title"] == "Ban from the bot"
            sent = await w.fake.submit_modal(opened, {"days": bad, "reason": "spam"})
            message = await answer(sent)
            assert is_ephemeral(message)
            assert text_of(message) == "**days**: a whole number from 1 to 3650, or empty."
            assert await w.services.moderation.active_ban(w.guild, w.member) is None

        opened = await click(w, item, "Ban", w.moderator)
        sent = await w.fake.submit_modal(opened, {"days": "7", "reason": "spam"})
        text = text_of(await answer(sent))
        assert text.startswith(f"Review #1: banned <@{w.member}> from the bot here until ")
        ban = await w.services.moderation.active_ban(w.guild, w.member)
        assert ban is not None and ban.reason == "spam"
        assert ban.expires_at == clock.now + timedelta(days=7)
        edited = w.fake.message(int(item["id"]))
        assert "Ban" not in buttons(edited)
        assert f"Ban by <@{w.moderator}>" in text_of(edited)
        assert "banned" in await refused_as_banned(w)


async def test_filter_add_list_remove_and_bad_patterns(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        assert await ask(w, w.moderator, "mod filter-list") == "No filters."
        text = await ask(w, w.moderator, "mod filter-add", {"pattern": "Red Barn"})
        assert text.startswith("Added filter #1: `red barn`")
        text = await ask(w, w.moderator, "mod filter-add", {"pattern": "red barn"})
        assert text == "Not done: 'red barn' is already in this server's filter."
        text = await ask(w, w.moderator, "mod filter-add", {"pattern": "re:(a+)+$"})
        assert text.startswith("Not done: this pattern can take too long to check")
        text = await ask(w, w.moderator, "mod filter-add", {"pattern": "re:a["})
        assert text.startswith("Not done: not a valid regular expression")
        text = await ask(w, w.moderator, "mod filter-add", {"pattern": "re:.*"})
        assert text == "Not done: this pattern matches everything, even an empty prompt."
        assert await ask(w, w.moderator, "mod filter-list") == "#1 `red barn`"

        job = await held(w, "a RED   barn in the snow")
        assert job.status.value == "held"
        text = await ask(w, w.moderator, "mod filter-remove", {"pattern": "RED BARN"})
        assert text == "Removed filter #1: `red barn`."
        text = await ask(w, w.moderator, "mod filter-remove", {"pattern": "red barn"})
        assert text == "`red barn` is not in the filter."
        assert await ask(w, w.moderator, "mod filter-list") == "No filters."
        job = await started_job(w, await request(w, "a red barn again"))
        await w.wait_job(job.id, "done")


async def test_filter_remove_takes_the_number_filter_list_shows(tmp_path):
    """A long regex is removed by the #id /mod filter-list shows, not retyped exactly; a
    literal filter written '#2' still goes by its text first."""
    async with world(tmp_path) as w:
        long = "re:(?:dr[a4@]g[o0]n|wyv[e3]rn)s?\\s+(?:attack|fire)"
        assert (await ask(w, w.moderator, "mod filter-add", {"pattern": long})).startswith(
            "Added filter #1"
        )
        await ask(w, w.moderator, "mod filter-add", {"pattern": "#1"})
        text = await ask(w, w.moderator, "mod filter-remove", {"pattern": "#1"})
        assert text == "Removed filter #2: `#1`."
        text = await ask(w, w.moderator, "mod filter-remove", {"pattern": " #1 "})
        assert text.startswith("Removed filter #1: `re:(?:dr[a4@]g[o0]n")
        assert await ask(w, w.moderator, "mod filter-list") == "No filters."
        text = await ask(w, w.moderator, "mod filter-remove", {"pattern": "#7"})
        assert text == "`#7` is not in the filter (nor a number /mod filter-list shows)."


async def test_mod_queue_lists_open_items_oldest_first(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        assert await ask(w, w.moderator, "mod queue") == "Nothing waits for review."
        one = await blocked(w, "the first one")
        await w.bot.filters.add(w.guild, "second", w.moderator)
        two = await held(w, "the second one")
        first_item = await item_message(w, one)
        await item_message(w, two)
        text = await ask(w, w.moderator, "mod queue")
        lines = text.strip().splitlines()
        assert lines[0] == "Review queue (2 open)"
        assert lines[1].startswith(f"#1 blocked · <@{w.member}> · the first one · [open](")
        assert lines[2].startswith(f"#2 held · <@{w.member}> · the second one · [open](")
        await press(w, first_item, "Dismiss", w.moderator)
        text = await ask(w, w.moderator, "mod queue")
        assert "#1" not in text and "#2 held" in text


async def test_mod_queue_shows_a_prompts_markdown_as_written(tmp_path):
    """A lone backtick in one prompt would open a code span over the items after it, their
    [open] links shown as raw text; a masked link in a prompt would be a live link."""
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        one = await blocked(w, "a `sharp cat [free](https://a.example)")
        two = await blocked(w, "a round `dog")
        await item_message(w, one)
        await item_message(w, two)
        lines = (await ask(w, w.moderator, "mod queue")).strip().splitlines()
        assert r"a \`sharp cat \[free](https://a.example) · [open](" in lines[1], lines[1]
        assert r"a round \`dog · [open](" in lines[2], lines[2]


async def test_strikes_outside_the_window_do_not_add_up(tmp_path):
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods, strikes_to_ban=2, strike_window_days=30)
        await w.grant(1000)
        first = await item_message(w, await blocked(w, "an old offence"))
        await press(w, first, "Strike", w.moderator)
        clock.advance(days=31)
        second = await item_message(w, await blocked(w, "a new offence"))
        assert "0 strikes in 30 days" in field_value(second, "Member")
        text = await press(w, second, "Strike", w.moderator)
        assert text == f"Review #2: strike for <@{w.member}> (1 in 30 days)."
        assert await w.services.moderation.active_ban(w.guild, w.member) is None
        summary = await ask(w, w.moderator, "mod strikes", {"member": w.member})
        assert "1 strike(s) in the last 30 days; 2 in all." in summary


async def test_an_approval_long_after_the_request_is_posted_in_the_channel(tmp_path):
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "lighthouse", w.moderator)
        job = await held(w, "a lighthouse in fog")
        item = await item_message(w, job)
        clock.advance(hours=3)  # the request's 15-minute interaction token is long gone
        await press(w, item, "Approve", w.moderator)
        result = await w.wait_result(job.id)
        assert result["content"] == f"<@{w.member}> your images are ready."
        await w.wait_status(job, "Done")
        assert (await w.wait_job(job.id, "done")).charged == COST


async def test_a_long_queue_fits_in_one_answer_and_says_how_many_more(tmp_path):
    """Sixty open items: the answer stays under Discord's embed limit instead of failing."""
    async with world(tmp_path) as w:
        await w.services.db.write(jobs_with_items(w, 60, "a long prompt about castles " * 4))
        text = await ask(w, w.moderator, "mod queue")
        assert len(text) < 4096 + 100
        assert "Review queue (60 open)" in text and "more; decide these first" in text


async def test_a_long_filter_list_says_how_many_more_and_attaches_them_all(tmp_path):
    """Ninety filters: a moderator can read every one of them (to remove it), not a list cut
    off in the middle of a line."""
    async with world(tmp_path) as w:
        for n in range(90):
            await w.bot.filters.add(w.guild, f"forbidden phrase number {n:03}", w.moderator)
        handle = await w.fake.slash(w.guild, w.channel, w.moderator, "mod filter-list")
        message = await answer(handle)
        assert is_ephemeral(message)
        text = text_of(message)
        assert len(text) <= 2000
        shown = [line for line in text.splitlines() if line.startswith("#")]
        assert all(line.endswith("`") for line in shown), "no line is cut"
        assert f"and {90 - len(shown)} more" in text
        [attachment] = message["attachments"]
        listed = w.fake.attachment_bytes(attachment).decode().splitlines()
        assert len(listed) == 90 and listed[89] == "#90 `forbidden phrase number 089`"


async def test_the_ban_button_does_not_shorten_a_longer_ban_another_moderator_gave(tmp_path):
    """One moderator bans a member with no end (/mod ban); another, on one of the member's
    review items, presses Ban for a day: the ban without end stands and the second moderator
    is told, instead of the member being let back in tomorrow."""
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        second = w.fake.add_member(w.guild, "mod-two", permissions=MANAGE_MESSAGES)
        item = await item_message(w, await blocked(w, "one too many"))
        await ask(w, w.moderator, "mod ban", {"member": w.member, "reason": "spam"})

        opened = await click(w, item, "Ban", second)
        sent = await w.fake.submit_modal(opened, {"days": "1", "reason": "this one"})
        text = text_of(await answer(sent))
        assert text == (
            f"<@{w.member}> is already banned here with no end (by <@{w.moderator}>); "
            "that ban stands."
        )
        clock.advance(days=2)
        ban = await w.services.moderation.active_ban(w.guild, w.member)
        assert ban is not None and ban.expires_at is None and ban.actor_id == w.moderator
        assert "banned" in await refused_as_banned(w)
        # A longer ban than the one in force does replace it.
        await ask(w, w.moderator, "mod unban", {"member": w.member})
        await ask(w, w.moderator, "mod ban", {"member": w.member, "days": 1})
        opened = await click(w, item, "Ban", second)
        sent = await w.fake.submit_modal(opened, {"days": "30", "reason": "worse"})
        assert text_of(await answer(sent)).startswith(f"Review #1: banned <@{w.member}>")
        ban = await w.services.moderation.active_ban(w.guild, w.member)
        assert ban is not None and ban.expires_at == clock.now + timedelta(days=30)


async def test_mod_ban_does_not_shorten_a_longer_ban_in_force(tmp_path):
    """A member banned with no end (or for longer) is banned again with /mod ban for a day:
    the longer ban stands and the moderator is told privately, instead of the member being
    let back in tomorrow. A longer ban does replace a shorter one."""
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.grant(1000)
        second = w.fake.add_member(w.guild, "mod-two", permissions=MANAGE_MESSAGES)
        await ask(w, w.moderator, "mod ban", {"member": w.member, "reason": "spam"})

        text = await ask(w, second, "mod ban", {"member": w.member, "days": 1})
        assert text == (
            f"<@{w.member}> is already banned here with no end (by <@{w.moderator}>); "
            "that ban stands."
        )
        clock.advance(days=2)
        ban = await w.services.moderation.active_ban(w.guild, w.member)
        assert ban is not None and ban.expires_at is None and ban.reason == "spam"
        assert "banned" in await refused_as_banned(w)

        # A ban ending in 30 days stands against one of 7 days, not against one of 60.
        await ask(w, w.moderator, "mod unban", {"member": w.member})
        await ask(w, w.moderator, "mod ban", {"member": w.member, "days": 30})
        until = clock.now + timedelta(days=30)
        text = await ask(w, second, "mod ban", {"member": w.member, "days": 7})
        assert text == (
            f"<@{w.member}> is already banned here until {until:%Y-%m-%d %H:%M} UTC "
            f"(by <@{w.moderator}>); that ban stands."
        )
        text = await ask(w, second, "mod ban", {"member": w.member, "days": 60})
        assert text.startswith(f"<@{w.member}> can no longer use the bot here until ")
        ban = await w.services.moderation.active_ban(w.guild, w.member)
        assert ban is not None and ban.expires_at == clock.now + timedelta(days=60)
        bans = await w.services.db.fetchall("SELECT actor_id FROM bans ORDER BY id")
        assert [b[0] for b in bans] == [w.moderator, w.moderator, second]


async def test_enough_strikes_ban_with_no_end_even_when_a_shorter_ban_is_in_force(tmp_path):
    """The member reaches the server's strike limit while a one-day ban is in force: the
    automatic ban (with no end) still comes, instead of the member being back the next day
    with every strike counted and no ban."""
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.admin, "settings strikes", {"count": 2, "days": 30})
        first = await item_message(w, await blocked(w, "first bad idea"))
        second = await item_message(w, await blocked(w, "second bad idea"))
        await press(w, first, "Strike", w.moderator)
        await ask(w, w.moderator, "mod ban", {"member": w.member, "days": 1, "reason": "cool off"})

        text = await press(w, second, "Strike", w.moderator)
        assert text == (
            f"Review #2: strike for <@{w.member}> (2 in 30 days); "
            "automatically banned from the bot here."
        )
        clock.advance(days=2)
        ban = await w.services.moderation.active_ban(w.guild, w.member)
        assert ban is not None and ban.expires_at is None
        assert ban.reason == "automatic: 2 strikes in 30 days"
        assert "banned" in await refused_as_banned(w)


async def test_a_member_who_left_can_be_banned_and_is_still_banned_when_back(tmp_path):
    """A member leaves the server right after their blocked job: moderators can still ban
    them (and look at or lift it), so coming back does not let them use the bot again."""
    async with world(tmp_path) as w:
        gone = w.fake.add_user("gone")  # a Discord user, not in the server (any more)
        text = await ask(w, w.moderator, "mod ban", {"member": gone, "reason": "abuse"})
        assert text == f"<@{gone}> can no longer use the bot here."
        summary = await ask(w, w.moderator, "mod strikes", {"member": gone})
        assert "Banned until unbanned: abuse" in summary

        join(w, w.guild, gone)
        await w.fake.settle()
        await w.grant(1000, gone)
        assert "banned from using the bot here" in await refused_as_banned(w, gone)
        text = await ask(w, w.moderator, "mod unban", {"member": gone})
        assert text == f"<@{gone}> can use the bot again."
