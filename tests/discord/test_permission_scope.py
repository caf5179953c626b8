"""Moderator rights are server-wide: Manage Messages granted in one channel (a channel
helper) does not make a moderator of the bot."""

from __future__ import annotations

from tests.discord.harness import MANAGE_MESSAGES, answer, text_of, world
from tests.fakes.state import Overwrite


async def test_manage_messages_in_one_channel_is_not_moderation_rights(tmp_path):
    async with world(tmp_path) as w:
        helper = w.fake.add_member(w.guild, "channel-helper")
        channel = w.fake.world.channel(w.channel)
        channel.overwrites.append(Overwrite(id=helper, type=1, allow=MANAGE_MESSAGES))
        h = await w.fake.slash(
            w.guild, w.channel, helper, "mod filter-add", options={"pattern": "castle"}
        )
        reply = text_of(await answer(h))
        assert h.ephemeral and "moderator" in reply.lower()
        assert await w.bot.filters.rules(w.guild) == []
        # A server-wide moderator in the same channel may.
        ok = await w.fake.slash(
            w.guild, w.channel, w.moderator, "mod filter-add", options={"pattern": "castle"}
        )
        assert "Added filter" in text_of(await answer(ok))
