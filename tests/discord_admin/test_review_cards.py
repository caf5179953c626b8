"""The moderators' review cards as they are redrawn: what they show of a prompt, a strike on
the member's other cards, two decisions close together, a database busy at a click, and
edits Discord keeps failing."""

from __future__ import annotations

import asyncio
import contextlib

from bot.civitai.simulator import Outcome
from bot.discord_adapter import board
from bot.store import db as dbmod
from bot.store.jobs import JobRecord
from tests.discord.harness import (
    MANAGE_MESSAGES,
    World,
    answer,
    buttons,
    field_value,
    is_ephemeral,
    started,
    text_of,
    world,
)
from tests.discord.test_delivery_stalls import rate_limited
from tests.discord.test_discord_faults import traced
from tests.discord_admin.helpers import Clock, ask, click, held, item_message, mod_channel, press
from tests.fakes import rest as fake_rest
from tests.safety.helpers import nsfw_channel
from tests.safety.test_mature import kept
from tests.store.read_only import write_locked


async def filtering(w) -> int:
    """A moderation channel (its id returned), Buzz for the member, and a filter holding any
    prompt with "lantern"."""
    mods = mod_channel(w)
    await w.set_guild(mod_channel_id=mods)
    await w.grant(1000)
    await w.bot.filters.add(w.guild, "lantern", w.moderator)
    return mods


async def test_a_multi_line_prompt_is_one_line_on_the_card(tmp_path):
    """A prompt written over several lines (and blank ones) reads as one line on the card,
    as the member wrote it otherwise; a very long one stays within Discord's limits."""
    async with world(tmp_path) as w:
        await filtering(w)
        job = await held(w, "a paper lantern\n\n  on a quiet\r\nriver")
        card = await item_message(w, job)
        description = card["embeds"][0]["description"]
        assert description == "a paper lantern on a quiet river"

        long = await held(w, "lantern\n" + "word " * 900)
        card = await item_message(w, long)
        description = card["embeds"][0]["description"]
        assert "\n" not in description and len(description) <= 1500
        assert description.startswith("lantern word word")


async def test_a_click_while_the_database_is_locked_asks_the_moderator_to_retry(
    tmp_path, caplog, monkeypatch
):
    """An operator's sqlite3 shell holds the write lock when a moderator presses Approve:
    they read privately that nothing was done and to try again (no traceback, no silence);
    the card still offers the decision, and pressing again once the lock is gone works."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path) as w:
        await filtering(w)
        job = await held(w, "a paper lantern")
        card = await item_message(w, job)
        with write_locked(tmp_path / "bot.sqlite3"):
            reply = await press(w, card, "Approve", w.moderator)
        assert "try again" in reply.lower() and "nothing was done" in reply, reply
        assert (await w.services.moderation.item_for_job(job.id)).open
        reply = await press(w, card, "Approve", w.moderator)
        assert "approved" in reply
        await w.wait_job(job.id, "done")
    assert traced(caplog) == []


async def test_two_decisions_close_together_leave_the_card_showing_the_later(tmp_path, caplog):
    """A strike's redraw of the card is slow to reach Discord; a second moderator rejects the
    job meanwhile. The card ends showing the rejection (no Approve left), not the strike's
    older picture of an open item landing last."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        job = await held(w, "a paper lantern")
        card = await item_message(w, job)
        # Discord lets 5 edits a channel run at once: discord.py learns it from a first one.
        w.fake.rate_limit_headers("PATCH", rf"/channels/{mods}/messages/")
        await w.bot.board.refresh((await w.services.moderation.item_for_job(job.id)).id)
        gate = w.fake.hold_requests("PATCH", rf"/channels/{mods}/messages/{card['id']}$", times=1)
        before = len(w.fake.calls)
        strike = await click(w, card, "Strike", w.moderator)
        await w.fake.wait_for(
            lambda: any(c.method == "PATCH" and c.status is None for c in w.fake.calls[before:]),
            what="the strike's redraw held",
        )
        other = w.fake.add_member(w.guild, "mod2", permissions=MANAGE_MESSAGES)
        reject = await click(w, card, "Reject", other)

        async with asyncio.timeout(10):
            while (await w.services.moderation.item_for_job(job.id)).open:
                await asyncio.sleep(0.02)
        # Unserialised, the rejection's redraw lands and its answer follows while the strike's
        # waits; serialised, it waits its turn (the answer too).
        with contextlib.suppress(TimeoutError):
            await answer(reject, timeout=1.0)
        gate.set()
        for handle in (strike, reject):
            assert is_ephemeral(await answer(handle))
        await w.fake.settle()
        shown = w.fake.message(int(card["id"]))
        assert "State: rejected" in text_of(shown), text_of(shown)
        assert list(buttons(shown)) == ["Ban"]  # struck already; nothing left to decide
    assert traced(caplog) == []


async def test_a_card_edit_discord_keeps_refusing_is_given_up_without_holding_other_cards(
    tmp_path, caplog, monkeypatch
):
    """Discord answers every edit of one card 429 "retry after 20 s" (discord.py would sleep
    and retry it five times, holding the channel's edit bucket for over a minute): the edit
    is given up in time with one warning, the moderator still gets their answer, and a
    decision on another card shows on it."""
    monkeypatch.setattr(board, "CARD_EDIT_WAIT", 0.5)  # 30 s in production
    refused: set[str] = set()
    original = fake_rest.RestApi.edit_message

    async def edit_message(self, request):
        if request.match_info["message_id"] in refused:
            return rate_limited(20.0)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_message", edit_message)
    async with world(tmp_path) as w:
        await filtering(w)
        stuck = await held(w, "a paper lantern")
        other = await held(w, "a second lantern")
        stuck_card, other_card = await item_message(w, stuck), await item_message(w, other)
        refused.add(stuck_card["id"])
        assert "strike" in await press(w, stuck_card, "Strike", w.moderator)
        assert "rejected" in await press(w, other_card, "Reject", w.moderator)
        shown = w.fake.message(int(other_card["id"]))
        assert "State: rejected" in text_of(shown)
        await w.fake.wait_for(
            lambda: any("given up" in r.getMessage() for r in caplog.records), what="given up"
        )
        edits = [c for c in w.fake.calls if c.path.endswith(f"/messages/{stuck_card['id']}")]
        assert len(edits) <= 2  # not retried on and on
    assert traced(caplog) == []


async def test_a_strike_shows_on_the_members_other_open_cards(tmp_path, caplog):
    """A member has two requests held for review; a moderator strikes on one. The other card
    shows the strike too (the next moderator weighs it), not "0 strikes" until its own next
    change; a closed card of theirs is left as it was decided."""
    async with world(tmp_path) as w:
        await filtering(w)
        first = await held(w, "a paper lantern")
        second = await held(w, "a second lantern")
        closed = await held(w, "a third lantern")
        first_card, second_card = await item_message(w, first), await item_message(w, second)
        closed_card = await item_message(w, closed)
        assert "rejected" in await press(w, closed_card, "Reject", w.moderator)
        closed_before = w.fake.message(int(closed_card["id"]))
        assert "0 strikes in 30 days" in text_of(w.fake.message(int(second_card["id"])))
        assert "strike" in await press(w, first_card, "Strike", w.moderator)
        await w.fake.settle()
        shown = text_of(w.fake.message(int(second_card["id"])))
        assert "1 strike in 30 days" in shown, shown
        assert "Strike by" not in shown  # the strike was given on the other item
        assert w.fake.message(int(closed_card["id"])) == closed_before
    assert traced(caplog) == []


async def test_jobs_shows_a_released_result_as_released(tmp_path, caplog):
    """A result kept from its channel, then sent by DM or released to the release channel by
    a moderator: /jobs tells the member where it went (with a link to the released post),
    no longer that it waits for the moderators."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        release_to = nsfw_channel(w)
        job, card = await kept(w)
        before = await ask(w, w.member, "jobs")
        assert job.id in before
        assert "moderator" in before.lower(), before  # kept back: it says so
        await press(w, card, "Send by DM", w.moderator)
        await w.wait_status(job, "sent the result to you by DM")
        after = await ask(w, w.member, "jobs")
        line = after[after.index(job.id) :]
        assert "sent the result to you by DM" in line, after
        assert "moderator will" not in line.lower() and "kept" not in line.lower(), after

        await ask(w, w.admin, "settings mature", {"release-channel": release_to})
        second, card = await kept(w, "an owl at night [sim:r]")
        await press(w, card, "Release", w.moderator)
        [post] = [m for m in w.fake.channel_messages(release_to) if second.id in text_of(m)]
        after = await ask(w, w.member, "jobs")
        line = after[after.index(second.id) :].split("`j")[0]
        assert "released" in line.lower() and f"/{release_to}/{post['id']}" in line, after
    assert traced(caplog) == []


async def posted_without_one(w: World, clock: Clock, charge: int | None = None) -> JobRecord:
    """Three lanterns, one never reachable: posted without it at its delivery deadline."""
    w.sim.script(Outcome(charge=charge, unavailable_blobs=(1,)))
    handle = await w.fake.slash(
        w.guild,
        w.channel,
        w.member,
        "create gpt-image-2",
        options={"prompt": "three lanterns", "quality": "medium", "quantity": 3},
    )
    job = await started(w, handle)
    await w.wait_job(job.id, "delivering")
    clock.advance(minutes=31)  # its delivery deadline: posted without it
    return await w.wait_job(job.id, "done")


async def test_a_partial_refund_is_worded_alike_wherever_the_charge_shows(tmp_path, caplog):
    """Three images for 234 Buzz, one never reachable: a moderator refunds its share. The
    member's message, the card and /jobs all say "156 Buzz charged (78 of 234 refunded)",
    not the full charge with the refund beside it (which read as if 234 were still taken)."""
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        job = await posted_without_one(w, clock)
        card = await item_message(w, job)
        assert "Refund" in buttons(w.fake.message(int(card["id"])))
        assert "refunded 78 Buzz" in await press(w, card, "Refund", w.moderator)
        words = "156 Buzz charged (78 of 234 refunded)"
        buzz = await w.fake.wait_for(
            lambda: "refunded" in (v := field_value(w.status_message(job), "Buzz")) and v,
            what="the refund on the member's message",
        )
        assert buzz.startswith(words), buzz
        assert field_value(w.fake.message(int(card["id"])), "Buzz") == words
        assert words in await ask(w, w.member, "jobs")
        assert words in await ask(w, w.member, "cancel", {"job": job.id})  # ended before it
        assert await w.available() == 1000 - 156
    assert traced(caplog) == []


async def test_a_refund_of_a_job_the_server_helped_pay_counts_from_what_the_member_paid(
    tmp_path, caplog
):
    """Three images held at 234, charged 250 by the orchestrator while the member had 240:
    they paid 240, the server covered 10. A moderator refunds the missing image's share: the
    member's message words the refund out of the 240 they paid (as the card does), with the
    server's part beside it, not "240 Buzz charged (...), N refunded" as if 240 were still taken."""
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(240)
        job = await posted_without_one(w, clock, charge=250)
        card = await item_message(w, job)
        answer = await press(w, card, "Refund", w.moderator)
        refunded = int(answer.split("refunded ")[1].split(" Buzz")[0].replace(",", ""))
        words = f"{240 - refunded:,} Buzz charged ({refunded:,} of 240 refunded)"
        buzz = await w.fake.wait_for(
            lambda: "refunded" in (v := field_value(w.status_message(job), "Buzz")) and v,
            what="the refund on the member's message",
        )
        assert buzz.startswith(words), buzz
        assert "the server covered 10" in buzz, buzz
        assert field_value(w.fake.message(int(card["id"])), "Buzz") == words
        assert await w.available() == refunded
    assert traced(caplog) == []
