"""Admins' and moderators' edge cases: a full review queue counted right, a moderation channel
that moved (or was deleted) with items pending, members who left, big channel lists, roles
that cannot be granted, settings that can be unset, categories refused as channels, a
channel deleted while a job runs there."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.civitai.simulator.scripting import Outcome
from tests.discord.harness import buttons, field_value, started, text_of, world
from tests.discord_admin.helpers import (
    COST,
    Clock,
    ask,
    blocked,
    delete_channel,
    item_message,
    jobs_with_items,
    ledger_kinds,
    mod_channel,
    option,
    press,
    request,
)
from tests.fakes.gateway import GUILDS
from tests.fakes.state import Channel

GUILD_CATEGORY = 4


async def test_the_queue_counts_every_open_item(tmp_path):
    async with world(tmp_path) as w:
        await w.services.db.write(jobs_with_items(w, 250))
        text = await ask(w, w.moderator, "mod queue")
        assert "Review queue (250 open)" in text
        shown = sum(1 for line in text.splitlines() if line.startswith("#"))
        assert f"… and {250 - shown} more; decide these first" in text


async def test_items_of_a_deleted_moderation_channel_come_to_the_new_one(tmp_path):
    async with world(tmp_path) as w:
        old = mod_channel(w)
        await ask(w, w.admin, "settings mod-channel", {"channel": old})
        await w.grant(1000)
        job = await blocked(w, "a lake")
        await item_message(w, job, old)
        delete_channel(w, old)
        await w.fake.settle()
        new = mod_channel(w, "mods-2")
        await w.fake.settle()
        await ask(w, w.admin, "settings mod-channel", {"channel": new})
        item = await item_message(w, job, new)
        assert "Refund" in str(item["components"])


@pytest.mark.parametrize("dms", [True, False])
async def test_a_channel_deleted_while_a_job_runs_there(tmp_path, caplog, dms):
    """The result goes to the member by DM; without DMs (and the command's token spent) the
    charge goes to the moderators. Either way the hold settles once, and no traceback."""
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        w.sim.script(Outcome(runtime=100), prompt="a kite")
        options = {"prompt": "a kite", "quality": "medium", "size": "1024x1024"}
        old = datetime.now(UTC) - timedelta(minutes=14)  # its token is spent when it ends
        handle = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options, created_at=old
        )
        job = await started(w, handle)
        await w.wait_job(job.id, "running")
        w.fake.set_accepts_dms(w.member, dms)
        delete_channel(w, w.channel)
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        await w.wait_idle()
        assert await ledger_kinds(w) == [("grant", 1000), ("hold", COST), ("capture", COST)]
        if dms:
            [dm] = [m for m in w.fake.dm_messages(w.member) if m.get("attachments")]
            assert f"result of job {job.id}" in text_of(dm)
        else:
            assert job.status.value == "failed"
            item = await item_message(w, job)
            await press(w, item, "Refund", w.moderator)
            assert await w.available() == 1000
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def leave(w, user: int) -> None:
    w.fake.world.guild(w.guild).members.pop(user)
    w.fake._dispatch_soon(
        "GUILD_MEMBER_REMOVE",
        {"guild_id": str(w.guild), "user": w.fake.world.user(user).payload()},
        intent=1 << 1,
    )
    w.fake.notify()


async def test_a_member_who_left_is_named_as_such(tmp_path):
    async with world(tmp_path) as w:
        leave(w, w.other)
        await w.fake.settle()
        text = await ask(w, w.admin, "quota grant", {"member": w.other, "amount": 5})
        assert text == "That user is not a member of this server (any more)."


async def test_settings_show_lists_a_few_channels_and_counts_the_rest(tmp_path):
    async with world(tmp_path) as w:
        ids = [w.fake.add_channel(w.guild, f"c{n}") for n in range(200)]
        await w.fake.settle()

        def deny(tx):
            for cid in ids:
                w.services.guilds.set_channel_in(tx, w.guild, cid, False, actor_id=None)

        await w.services.db.write(deny)
        text = await ask(w, w.admin, "settings show")
        assert "and 175 more" in text and len(text) < 4096


async def test_everyone_cannot_be_made_admin_or_moderator(tmp_path):
    async with world(tmp_path) as w:
        for sub in ("admin-role", "mod-role"):
            text = await ask(w, w.admin, f"settings {sub}", {"role": w.guild})  # @everyone
            assert text.startswith("**role**: @everyone would make every member"), text
        shown = await ask(w, w.admin, "settings show")
        assert "Moderator role: not set · admin role: not set" in shown


async def test_the_log_channel_and_the_roles_can_be_unset(tmp_path):
    async with world(tmp_path) as w:
        role = w.fake.add_role(w.guild, "helpers")
        logs = w.fake.add_channel(w.guild, "bot-log")
        await w.fake.settle()
        await ask(w, w.admin, "settings log-channel", {"channel": logs})
        await ask(w, w.admin, "settings mod-role", {"role": role})
        await ask(w, w.admin, "settings admin-role", {"role": role})
        for sub, name in (("log-channel", "channel"), ("mod-role", "role"), ("admin-role", "role")):
            assert not option(w, "settings", sub, name).get("required")
            await ask(w, w.admin, f"settings {sub}")
        shown = await ask(w, w.admin, "settings show")
        assert "Log channel: not set" in shown
        assert "Moderator role: not set · admin role: not set" in shown


def add_category(w, name: str) -> int:
    world = w.fake.world
    guild = world.guild(w.guild)
    category = Channel(
        id=world.snowflakes.new(),
        type=GUILD_CATEGORY,
        name=name,
        guild_id=guild.id,
        position=len(guild.channels),
    )
    guild.channels[category.id] = category
    world.channels[category.id] = category
    world.channel_history[category.id] = []
    w.fake._dispatch_soon("CHANNEL_CREATE", category.payload(world), intent=GUILDS)
    w.fake.notify()
    return category.id


async def test_a_category_is_not_offered_as_a_channel(tmp_path):
    """A rule on a category would not reach its channels (and an allow-list of a category
    alone would refuse everywhere): the options do not offer one (Discord, like the fake,
    then refuses to send one)."""
    async with world(tmp_path) as w:
        add_category(w, "images")
        await w.fake.settle()
        for path in (("settings", "channel", "channel"), ("settings", "mature", "channel")):
            types = option(w, *path).get("channel_types") or []
            assert types and GUILD_CATEGORY not in types, (path, types)


async def test_the_status_balance_includes_a_refill_due_as_buzz_balance_does(tmp_path):
    """A job admitted a minute before the week turns ends after it: its status shows the
    balance /buzz balance shows (this week's refill, due at the member's next use)."""
    clock = Clock()
    clock.now = datetime(2025, 3, 2, 23, 59, 0, tzinfo=UTC)  # a Sunday, a minute before Monday
    async with world(tmp_path, clock=clock) as w:
        await ask(w, w.admin, "quota default", {"amount": 100, "period": "weekly"})
        w.sim.script(Outcome("succeed", runtime=100))
        job = await started(w, await request(w, "a lighthouse"))
        clock.advance(minutes=2)  # Monday 00:01, while the job runs
        job = await w.wait_job(job.id, "done")
        await w.wait_result(job.id)
        await w.fake.settle()
        assert "**100 Buzz** available" in await ask(w, w.member, "buzz balance")
        assert "your balance: 100" in field_value(w.status_message(job), "Buzz")


async def test_an_item_moved_to_a_new_moderation_channel_leaves_no_live_copy_behind(tmp_path):
    """/settings mod-channel moves an open item: the old copy says where it went and loses its
    buttons (it would otherwise show a stale state forever); the new copy decides it."""
    async with world(tmp_path) as w:
        old = mod_channel(w)
        await ask(w, w.admin, "settings mod-channel", {"channel": old})
        await w.grant(1000)
        job = await blocked(w, "a lake")
        first = await item_message(w, job, old)
        new = mod_channel(w, "mods-2")
        await w.fake.settle()
        await ask(w, w.admin, "settings mod-channel", {"channel": new})
        moved = await item_message(w, job, new)

        def old_copy_moved() -> dict | None:
            message = w.fake.message(int(first["id"]))
            return message if f"<#{new}>" in text_of(message) else None

        stale = await w.fake.wait_for(old_copy_moved, timeout=10, what="the old copy's note")
        assert buttons(stale) == {}
        await press(w, moved, "Refund", w.moderator)
        item = await w.services.moderation.item_for_job(job.id)
        assert item is not None and item.status == "refunded"
