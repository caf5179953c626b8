"""Buttons whose custom_id was crafted (ids that do not exist, or are too long for SQLite) are
answered privately as unknown, and nothing changes."""

from __future__ import annotations

import logging

import pytest

from tests.discord.harness import answer, is_ephemeral, text_of, world
from tests.discord_admin.helpers import blocked, item_message, mod_channel, snapshot
from tests.discord_admin.test_guilds import click_from
from tests.discord_admin.test_settings import owner_dms


@pytest.mark.parametrize(
    "custom_id",
    [
        "rev:refund:0",
        "rev:refund:" + "9" * 25,
        "rev:strike:" + "1" * 40,
        "rev:approve:" + "9" * 19,
        "res:reroll:j" + "f" * 80,
        "res:details:j0",
        "res:delete:j0",
        "appeal:j0",
    ],
)
async def test_a_crafted_id_from_a_moderator_is_refused_privately(tmp_path, caplog, custom_id):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        item = await item_message(w, await blocked(w, "a thing"))
        before = await snapshot(w, mods, w.channel)
        handle = await click_from(w, w.guild, mods, w.moderator, int(item["id"]), custom_id)
        message = await answer(handle)
        await w.fake.settle()
        assert is_ephemeral(message)
        assert "Something went wrong" not in text_of(message), text_of(message)
        assert await snapshot(w, mods, w.channel) == before
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("kind", ["appeal", "job:cancel", "res:upscale", "enh:use", "rev:approve"])
async def test_a_button_pressed_in_a_dm_is_refused_privately(tmp_path, caplog, kind):
    """Jobs and review items belong to a server: a press arriving from the member's DM with
    the bot (a crafted one: no DM message carries these) is a clear line, and nothing changes."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await blocked(w, "a thing")
        status = w.status_message(job)
        dm = w.fake.world.dm_channel_for(w.member).id
        # The review item finds no moderation channel and the owner is told (which records
        # that they were): done before the snapshot, not racing with the press.
        await w.fake.wait_for(lambda: owner_dms(w), what="the owner's DM")
        await w.fake.settle()
        before = await snapshot(w, w.channel)
        key = "1" if kind.startswith("rev:") else job.id
        press = await click_from(w, None, dm, w.member, int(status["id"]), f"{kind}:{key}")
        message = await answer(press)
        await w.fake.settle()
        assert is_ephemeral(message)
        assert "Something went wrong" not in text_of(message), text_of(message)
        assert await snapshot(w, w.channel) == before
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
