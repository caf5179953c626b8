"""A review item posted in the moderation channel just before the bot died, its message not
recorded yet: the next start finds that message instead of posting the item a second time."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.discord.harness import text_of, world
from tests.discord_admin.helpers import (
    blocked,
    mod_channel,
    press,
    request,
    started_job,
)


async def hang(*args: object, **kwargs: object) -> None:
    await asyncio.Event().wait()


async def test_an_item_posted_before_a_restart_is_not_posted_twice(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        # The bot dies between Discord making the item's message and the bot recording it.
        w.services.moderation.set_item_message = hang  # type: ignore[method-assign]
        job = await blocked(w, "a forbidden orchard")

        def cards() -> list[dict]:
            return [m for m in w.fake.channel_messages(mods) if f"job {job.id}" in text_of(m)]

        await w.fake.wait_for(cards, timeout=10, what="the review item")
        await w.restart_bot()
        await w.fake.settle()
        async with asyncio.timeout(10):
            while (await w.services.moderation.item_for_job(job.id)).message_id is None:
                await asyncio.sleep(0.02)
        await w.fake.settle()
        [card] = cards()
        item = await w.services.moderation.item_for_job(job.id)
        assert item.message_id == int(card["id"])
        # Its buttons decide it, and the one message shows the decision.
        await press(w, card, "Refund", w.moderator)
        await w.fake.settle()
        assert "State: refunded" in text_of(w.fake.message(int(card["id"])))


async def test_an_item_on_its_way_is_not_posted_again_when_the_server_comes_back(tmp_path):
    """A held request's card is on its way to the moderation channel (Discord slow to take
    it) when the server has a short outage: the pass over unposted items that follows its
    return leaves that card to the post under way. One card, not two."""
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "lantern", w.moderator)
        gate = w.fake.hold_requests("POST", rf"/channels/{mods}/messages$")
        # When the pass has read which items have no card yet, and when it is over.
        listed, passed = asyncio.Event(), asyncio.Event()
        moderation, board = w.services.moderation, w.bot.board
        unposted, pending_pass = moderation.items_without_message, board.post_pending

        async def items_without_message(*args: Any, **kwargs: Any) -> list:
            try:
                return await unposted(*args, **kwargs)
            finally:
                listed.set()

        async def post_pending(guild_id: int, **kwargs: Any) -> int:
            try:
                return await pending_pass(guild_id, **kwargs)
            finally:
                passed.set()

        moderation.items_without_message = items_without_message  # type: ignore[method-assign]
        board.post_pending = post_pending  # type: ignore[method-assign]
        handle = await request(w, "a stone lantern")
        await w.fake.wait_for(
            lambda: any(c.path.endswith(f"/{mods}/messages") for c in w.fake.calls),
            what="the card on its way",
        )
        w.fake.set_guild_unavailable(w.guild, True)
        await w.fake.settle()
        w.fake.set_guild_unavailable(w.guild, False)
        async with asyncio.timeout(10):
            await listed.wait()
        gate.set()  # Discord takes the card, and answers
        job = await w.wait_job((await started_job(w, handle)).id, "held")
        async with asyncio.timeout(10):
            await passed.wait()
            while (await moderation.item_for_job(job.id)).message_id is None:
                await asyncio.sleep(0.02)
        await w.fake.settle()
        cards = [m for m in w.fake.channel_messages(mods) if f"job {job.id}" in text_of(m)]
        item = await moderation.item_for_job(job.id)
        assert [int(m["id"]) for m in cards] == [item.message_id]
