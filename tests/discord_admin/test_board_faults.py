"""Discord faults on the review board: an item's message deleted, the moderation channel out
of reach, a cold cache, a dropped connection. The buttons are the moderators' only way to
decide an item, so an open item always ends up with a live message (or the owner is told)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web

from bot.store import db as dbmod
from tests.discord.harness import answer, buttons, text_of, world
from tests.discord.test_discord_faults import traced
from tests.discord_admin.helpers import (
    ask,
    held,
    item_message,
    mod_channel,
    press,
    request,
    started_job,
)
from tests.discord_admin.test_settings import owner_dms
from tests.fakes import rest as fake_rest
from tests.fakes.gateway import GUILDS, Gateway
from tests.fakes.state import VIEW_CHANNEL
from tests.store.read_only import write_locked


def delete_by_moderator(w, message_id: int, *, seen: bool = True) -> None:
    """A moderator deletes the bot's message in the client; `seen=False`: while the bot was
    not connected (it never gets the MESSAGE_DELETE)."""
    stored = w.fake.world.messages[message_id]
    stored.deleted = True
    if seen:
        w.fake.schedule_message_event("MESSAGE_DELETE", stored)


async def reposted(w, job, old: dict) -> dict:
    """The item's new message (not `old`), once the board has recorded it."""

    async def find() -> dict | None:
        item = await w.services.moderation.item_for_job(job.id)
        if item is None or item.message_id in (None, int(old["id"])):
            return None
        return await item_message(w, job)

    async with asyncio.timeout(10):
        while (message := await find()) is None:
            await asyncio.sleep(0.02)
        return message


async def filtering(w) -> int:
    """A moderation channel (its id returned), Buzz for the member, and a filter that holds
    any prompt with "lantern" for review: the set-up every test here starts from."""
    mods = mod_channel(w)
    await w.set_guild(mod_channel_id=mods)
    await w.grant(1000)
    await w.bot.filters.add(w.guild, "lantern", w.moderator)
    return mods


async def test_a_deleted_review_item_is_posted_again_with_working_buttons(tmp_path, caplog):
    """A moderator deletes a held job's item in the moderation channel: it is posted again
    (the buttons are the only way to approve it), /mod queue links to the new message, and
    Approve there runs the job."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        job = await held(w, "a paper lantern")
        first = await item_message(w, job)
        delete_by_moderator(w, int(first["id"]))
        again = await reposted(w, job, first)
        assert list(buttons(again)) == ["Approve", "Reject", "Strike", "Ban"]
        queue = await ask(w, w.moderator, "mod queue")
        assert f"/{mods}/{again['id']})" in queue and str(first["id"]) not in queue
        await press(w, again, "Approve", w.moderator)
        await w.wait_job(job.id, "done")
    assert traced(caplog) == []


async def test_an_item_deleted_while_the_bot_was_away_is_posted_again_on_its_next_edit(
    tmp_path, caplog
):
    """The delete happened while the bot was offline (no MESSAGE_DELETE reached it): the next
    edit of the item (the member's appeal) finds 10008 Unknown Message and posts it again,
    appeal included."""
    async with world(tmp_path) as w:
        await filtering(w)
        job = await held(w, "a paper lantern")
        first = await item_message(w, job)
        delete_by_moderator(w, int(first["id"]), seen=False)
        await appeal(w, job, "Only a lantern festival.")
        again = await reposted(w, job, first)
        assert "lantern festival" in text_of(again)
        assert "Approve" in buttons(again)
        await press(w, again, "Reject", w.moderator)
        await w.wait_job(job.id, "rejected")
    assert traced(caplog) == []


@pytest.fixture
def late_guilds(monkeypatch):
    """late_guilds.hold = True: after a fresh login, Discord has not sent the guilds yet (the
    bot's cache is empty); late_guilds.release() sends them."""

    class Late:
        def __init__(self) -> None:
            self.hold = False
            self.held: list[tuple[Any, ...]] = []

        async def release(self) -> None:
            self.hold = False
            for args in self.held:
                await original(*args)

    late = Late()
    original = Gateway._send_dispatch

    async def send_dispatch(self, session, event, data):
        if late.hold and event == "GUILD_CREATE":
            late.held.append((self, session, event, data))
            return
        await original(self, session, event, data)

    monkeypatch.setattr(Gateway, "_send_dispatch", send_dispatch)
    return late


async def test_an_item_is_updated_right_after_a_fresh_login(tmp_path, caplog, late_guilds):
    """The gateway session could not be resumed: the bot logs in afresh and Discord has not
    sent the guilds yet when the member appeals. The item's message still shows the appeal
    (it is edited without the channel in the cache)."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        job = await held(w, "a paper lantern")
        item = await item_message(w, job)
        status = w.status_message(job)
        late_guilds.hold = True
        identified = w.fake.gateway.identifies
        w.fake.gateway.sessions.clear()  # the resume fails: a new session
        await w.fake.gateway.reconnect_request()
        await w.fake.wait_for(
            lambda: w.fake.gateway.identifies > identified and w.fake.gateway.connected,
            what="a fresh login",
        )
        await w.fake.wait_for(lambda: w.bot.get_channel(mods) is None, what="an empty cache")
        opened = await w.fake.click(int(status["id"]), buttons(status)["Appeal"], w.member)
        await opened.response()
        sent = await w.fake.submit_modal(opened, {"note": "Only a lantern festival."})
        assert "appeal was added" in text_of(await answer(sent))
        await w.fake.wait_for(
            lambda: "lantern festival" in text_of(w.fake.message(int(item["id"]))),
            what="the appeal on the item",
        )
        await late_guilds.release()
    assert traced(caplog) == []


@pytest.fixture
def drop_posts(monkeypatch):
    """drop_posts[channel_id] = n: the next n posts there lose their connection before
    Discord answers (a reset, a proxy timing out)."""
    drops: dict[int, int] = {}
    original = fake_rest.RestApi.create_message

    async def create_message(self, request):
        channel_id = int(request.match_info["channel_id"])
        if drops.get(channel_id):
            drops[channel_id] -= 1
            await request.read()
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=204)
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "create_message", create_message)
    return drops


async def test_an_item_whose_post_lost_its_connection_is_posted_later(tmp_path, caplog, drop_posts):
    """The connection drops while the item is posted: one warning, no traceback, and the
    item reaches the moderation channel on the next try instead of waiting for a restart."""
    async with world(tmp_path) as w:
        w.bot.board.retry_base = 0.05  # the first wait before trying again (seconds)
        mods = await filtering(w)
        drop_posts[mods] = 2
        job = await held(w, "a paper lantern")
        item = await item_message(w, job)
        assert drop_posts[mods] == 0
        await press(w, item, "Approve", w.moderator)
        await w.wait_job(job.id, "done")
        warned = [r for r in caplog.records if "review #1 not posted" in r.getMessage()]
        assert warned and all(r.levelno == logging.WARNING for r in warned)
    assert traced(caplog) == []


async def appeal(w, job, note: str) -> None:
    status = w.status_message(job)
    opened = await w.fake.click(int(status["id"]), buttons(status)["Appeal"], w.member)
    await opened.response()
    sent = await w.fake.submit_modal(opened, {"note": note})
    assert "appeal was added" in text_of(await answer(sent))


async def test_the_owner_is_told_when_the_bot_lost_access_to_the_items(tmp_path, caplog):
    """Someone took the bot's access to the moderation channel (403 Missing Access): its items
    can no longer be updated, and the server's owner is told how to fix it."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        job = await held(w, "a paper lantern")
        await item_message(w, job)
        w.fake.set_bot_channel_permissions(mods, deny=VIEW_CHANNEL)
        await w.fake.settle()
        await appeal(w, job, "Only a lantern festival.")
        [dm] = await w.fake.wait_for(lambda: owner_dms(w), what="the owner's DM")
        assert f"<#{mods}>" in dm["content"] and "/settings mod-channel" in dm["content"]
    assert traced(caplog) == []


async def test_items_of_a_deleted_moderation_channel_are_not_lost(tmp_path, caplog):
    """The moderation channel is deleted (10003 Unknown Channel): the owner is told, /mod queue
    says the item is not posted (no link to nowhere), and a new channel gets it."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        job = await held(w, "a paper lantern")
        await item_message(w, job)
        gone = w.fake.world.channels.pop(mods)
        w.fake.world.guild(w.guild).channels.pop(mods, None)
        w.fake._dispatch_soon("CHANNEL_DELETE", gone.payload(w.fake.world), intent=GUILDS)
        await w.fake.settle()
        await appeal(w, job, "Only a lantern festival.")
        [dm] = await w.fake.wait_for(lambda: owner_dms(w), what="the owner's DM")
        assert f"<#{mods}>" in dm["content"]
        assert "not posted" in await ask(w, w.moderator, "mod queue")
        new = mod_channel(w, "mod-queue-2")
        await ask(w, w.admin, "settings mod-channel", {"channel": new})
        item = await item_message(w, job, new)
        assert "lantern festival" in text_of(item)
        await press(w, item, "Approve", w.moderator)
        await w.wait_job(job.id, "done")
    assert traced(caplog) == []


async def test_the_owner_is_told_of_each_new_problem_once(tmp_path, caplog):
    """Told once that the bot lost access (a second item does not repeat it); access given
    back and items flow again; then the channel is deleted: a new problem, told as well."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        w.fake.set_bot_channel_permissions(mods, deny=VIEW_CHANNEL)
        await w.fake.settle()
        await held(w, "a paper lantern")
        await w.fake.wait_for(lambda: owner_dms(w), what="the owner's first DM")
        await held(w, "a second lantern")
        await w.fake.settle()
        assert len(owner_dms(w)) == 1  # the same problem: not repeated
        w.fake.set_bot_channel_permissions(mods)  # fixed, without /settings
        await w.fake.settle()
        await item_message(w, await held(w, "a third lantern"))
        gone = w.fake.world.channels.pop(mods)
        w.fake.world.guild(w.guild).channels.pop(mods, None)
        w.fake._dispatch_soon("CHANNEL_DELETE", gone.payload(w.fake.world), intent=GUILDS)
        await w.fake.settle()
        await held(w, "a fourth lantern")
        await w.fake.wait_for(lambda: len(owner_dms(w)) == 2, what="the owner's second DM")
        assert f"<#{mods}>" in owner_dms(w)[1]["content"]
    assert traced(caplog) == []


async def test_an_item_refreshed_while_the_bot_is_out_of_the_server_warns_no_one(tmp_path, caplog):
    """The bot was removed from the server: an item's refresh meets 403 Missing Access, which
    is not the moderation channel's problem. Nobody can be told (the bot is not there), so
    the warning is not claimed either: once back, a real problem with the channel is told."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        job = await held(w, "a paper lantern")
        await item_message(w, job)
        w.fake.remove_bot(w.guild)
        await w.fake.settle()
        [item] = await w.services.moderation.open_items(w.guild)
        await w.bot.board.refresh(item.id)
        await w.fake.settle()
        assert owner_dms(w) == []
        assert (await w.services.guilds.settings(w.guild)).mod_channel_warning is None
        w.fake.add_bot_back(w.guild)
        await w.fake.settle()
        w.fake.set_bot_channel_permissions(mods, deny=VIEW_CHANNEL)
        await w.fake.settle()
        await appeal(w, job, "Only a lantern festival.")
        [dm] = await w.fake.wait_for(lambda: owner_dms(w), what="the owner's DM")
        assert f"<#{mods}>" in dm["content"]
    assert traced(caplog) == []


async def test_moderators_read_why_items_are_not_posted_when_the_owner_takes_no_dms(
    tmp_path, caplog
):
    """The bot lost access to the moderation channel and the server's owner takes no DMs:
    nobody was told. /mod queue and /settings show now say what is wrong and how to fix it,
    until it is fixed."""
    async with world(tmp_path) as w:
        mods = await filtering(w)
        owner = w.fake.world.guild(w.guild).owner_id
        w.fake.set_accepts_dms(owner, False)
        w.fake.set_bot_channel_permissions(mods, deny=VIEW_CHANNEL)
        await w.fake.settle()
        job = await held(w, "a paper lantern")
        await w.fake.wait_for(
            lambda: any("owner does not accept DMs" in r.getMessage() for r in caplog.records),
            what="the owner's DM refused",
        )
        queue = await ask(w, w.moderator, "mod queue")
        problem = (
            f"⚠️ Review items cannot be posted: I cannot post in <#{mods}> (my access to it "
            "was taken). An admin fixes it with /settings mod-channel."
        )
        assert problem in queue and "a paper lantern · not posted" in queue
        shown = await ask(w, w.admin, "settings show")
        assert f"Moderation channel: <#{mods}> ⚠️ I cannot post in <#{mods}> (my access" in shown

        w.fake.set_bot_channel_permissions(mods)
        await w.fake.settle()
        await ask(w, w.admin, "settings mod-channel", {"channel": mods})
        await item_message(w, job)
        assert "⚠️" not in await ask(w, w.moderator, "mod queue")
    assert traced(caplog) == []


async def test_an_item_posted_while_the_database_is_locked_is_recorded_not_posted_twice(
    tmp_path, caplog, monkeypatch
):
    """The item reaches the moderation channel, but recording its message meets an operator's
    sqlite3 shell holding the write lock: the board finds that message again once the lock is
    gone and records it (one warning, no traceback), so a restart does not post a second copy
    whose twin never shows the moderators' decisions."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path) as w:
        w.bot.board.retry_base = 0.05  # the first wait before trying again (seconds)
        mods = await filtering(w)
        gate = w.fake.hold_requests("POST", rf"/channels/{mods}/messages$", answer_only=True)
        handle = await request(w, "a paper lantern")
        await w.fake.wait_for(lambda: w.fake.channel_messages(mods), what="the item posted")
        with write_locked(tmp_path / "bot.sqlite3"):
            gate.set()
            await w.fake.wait_for(
                lambda: any("database is busy" in r.getMessage() for r in caplog.records),
                what="the write refused",
            )
        job = await w.wait_job((await started_job(w, handle)).id, "held")
        item = await item_message(w, job)  # recorded
        await w.restart_bot()
        await w.fake.settle()
        copies = [m for m in w.fake.channel_messages(mods) if f"job {job.id}" in text_of(m)]
        assert [m["id"] for m in copies] == [item["id"]]
        await press(w, item, "Approve", w.moderator)
        await w.wait_job(job.id, "done")
    assert traced(caplog) == []
