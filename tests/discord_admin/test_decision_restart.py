"""A decision committed just before the bot stopped, its item's message not yet redrawn: the
next press of a stale button redraws it (and still decides nothing twice)."""

from __future__ import annotations

import asyncio

from tests.discord.harness import text_of, world
from tests.discord_admin.helpers import blocked, click, item_message, mod_channel, press
from tests.store.conftest import assert_cache_matches_entries


async def hang(*args, **kwargs):
    await asyncio.Event().wait()


async def test_a_stale_button_after_a_restart_redraws_the_decided_item(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        job = await blocked(w, "a forbidden picnic")
        item = await item_message(w, job)
        # The bot stops after the refund's commit, before the message is redrawn.
        w.bot.board.refresh = hang  # type: ignore[method-assign]
        w.bot.review.engine.notify = hang  # type: ignore[method-assign]
        w.bot.answer_wait = 0  # it dies: what is under way is not waited for
        handle = await click(w, item, "Refund", w.moderator)
        await handle.response()
        async with asyncio.timeout(10):
            while (await w.services.moderation.item_for_job(job.id)).open:
                await asyncio.sleep(0.02)
        await w.restart_bot()
        w.bot.answer_wait = 0  # the dead process's click is not this one's to wait for
        await w.fake.settle()
        again = await press(w, item, "Refund", w.moderator)
        assert "already" in again.lower()
        await w.fake.settle()
        shown = w.fake.message(int(item["id"]))
        assert "State: refunded" in text_of(shown)
        assert await w.available() == 1000  # refunded once
        await assert_cache_matches_entries(w.services.db)
