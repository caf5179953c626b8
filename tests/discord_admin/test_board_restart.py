"""A review item posted in the moderation channel just before the bot died, its message not
recorded yet: the next start finds that message instead of posting the item a second time."""

from __future__ import annotations

import asyncio

from tests.discord.harness import text_of, world
from tests.discord_admin.helpers import blocked, mod_channel, press


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
