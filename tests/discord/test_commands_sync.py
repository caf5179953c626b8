"""Slash commands are registered where they belong and only when they changed: a restart
registers nothing again, going global clears the old dev guild's copies (no command shows
twice), and a sharded bot serves the same commands."""

from __future__ import annotations

from bot.discord_adapter.bot import ShardedImageBot
from tests.discord.harness import answer, world


def command_puts(w) -> list:
    return [c for c in w.fake.calls if c.method == "PUT" and c.path.endswith("/commands")]


async def test_a_restart_registers_nothing_again_when_the_commands_did_not_change(tmp_path):
    async with world(tmp_path) as w:
        assert len(command_puts(w)) == 1 and w.fake.commands.get(w.guild)
        await w.restart_bot()
        assert len(command_puts(w)) == 1
        await w.restart_bot()
        assert len(command_puts(w)) == 1


async def test_going_global_clears_the_old_dev_guilds_commands(tmp_path):
    async with world(tmp_path) as w:
        assert w.fake.commands.get(w.guild) and not w.fake.commands.get(None)
        discord = w.settings.discord.model_copy(update={"dev_guild": None})
        w.settings = w.settings.model_copy(update={"discord": discord})
        await w.restart_bot()
        assert not w.fake.commands.get(w.guild), "no command shows twice"
        names = {c["name"] for c in w.fake.commands[None]}
        assert {"imagine", "create", "edit", "buzz", "quota", "settings", "mod"} <= names
        # A member still finds /buzz, now the global one.
        h = await w.fake.slash(w.guild, w.channel, w.member, "buzz balance")
        reply = await answer(h)
        assert reply["embeds"] or "Buzz" in reply["content"]
        await w.restart_bot()
        assert len(command_puts(w)) == 3  # the guild's registration, its clearing, the global


async def test_a_sharded_bot_serves_the_same_commands(tmp_path):
    async with world(tmp_path, discord={"shard_count": 1}) as w:
        assert isinstance(w.bot, ShardedImageBot) and w.bot.shard_count == 1
        assert list(w.bot.shards) == [0]  # its one shard is connected
        h = await w.fake.slash(w.guild, w.channel, w.member, "buzz balance")
        reply = await answer(h)
        assert reply["embeds"] or "Buzz" in reply["content"]
