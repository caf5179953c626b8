"""An ending that could be shown nowhere (the bot lost access to the job's channel while it
ran, and the member takes no DMs) is shown on the job's status message once the bot may see
the channel again: however the access comes back (the channel's own permissions, the parent
channel of a thread, a role's permissions, a role given to the bot)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.civitai.simulator import Outcome
from tests.discord.harness import World, started, text_of, world
from tests.fakes.state import DEFAULT_EVERYONE_PERMISSIONS, VIEW_CHANNEL

DEAD_TOKEN = timedelta(minutes=14, seconds=57)  # the status message is edited as the bot's


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def failed_unseen(w: World, channel: int, cut_off) -> object:
    """A job in `channel` that fails after `cut_off()` took the bot's access; its ending is
    shown nowhere (the member takes no DMs)."""
    await w.grant(1000)
    w.sim.script(Outcome("fail", runtime=100), prompt="a kite")
    h = await w.fake.slash(
        w.guild,
        channel,
        w.member,
        "create gpt-image-2",
        options={"prompt": "a kite"},
        created_at=datetime.now(UTC) - DEAD_TOKEN,
    )
    job = await started(w, h)
    await w.wait_job(job.id, "running")
    cut_off()
    w.fake.set_accepts_dms(w.member, False)
    job = await w.wait_job(job.id, "failed", timeout=30)
    await w.wait_idle()
    await w.fake.settle()
    assert "failed" not in text_of(w.status_message(job))
    return job


async def test_an_ending_in_a_thread_is_shown_when_its_parent_channel_is_open_again(
    tmp_path, caplog
):
    """A thread has its parent's permissions: the admin changes the parent channel (a thread
    has no permissions of its own), and the thread's status message shows how the job ended."""
    async with world(tmp_path) as w:
        thread = w.fake.add_thread(w.channel, "kites", owner_id=w.member)
        await w.fake.settle()
        job = await failed_unseen(
            w, thread, lambda: w.fake.set_bot_channel_permissions(w.channel, deny=VIEW_CHANNEL)
        )
        w.fake.set_bot_channel_permissions(w.channel)
        await w.wait_status(job, "failed", timeout=10)
    assert traced(caplog) == []


@pytest.mark.parametrize("how", ["role permissions", "role given to the bot"])
async def test_an_ending_is_shown_when_a_role_gives_the_bot_access_again(tmp_path, caplog, how):
    """The admin takes View Channel from @everyone (the bot's access was through it) while the
    job runs; then gives it back through a role: by the bot's own role's permissions, or by a
    role given to the bot. No channel changed, yet the status message shows the ending."""
    async with world(tmp_path) as w:
        guild = w.fake.world.guild(w.guild)
        [bot_role] = guild.members[w.fake.bot_user_id].roles
        helpers = w.fake.add_role(w.guild, "helpers", VIEW_CHANNEL)
        await w.fake.settle()
        no_view = DEFAULT_EVERYONE_PERMISSIONS & ~VIEW_CHANNEL
        job = await failed_unseen(
            w, w.channel, lambda: w.fake.set_role_permissions(w.guild, w.guild, no_view)
        )
        if how == "role permissions":
            w.fake.set_role_permissions(w.guild, bot_role, VIEW_CHANNEL)
        else:
            w.fake.set_member_roles(w.guild, w.fake.bot_user_id, [bot_role, helpers])
        await w.wait_status(job, "failed", timeout=10)
    assert traced(caplog) == []


async def test_changes_to_other_channels_do_not_retry_an_ending_in_a_thread_out_of_sight(
    tmp_path, caplog
):
    """The ending's thread was archived and the bot lost sight of it: an admin reordering or
    editing five other channels does not send five edits Discord refuses (they count towards
    its limit on refused requests); only a server-wide change tries it again."""
    async with world(tmp_path) as w:
        thread = w.fake.add_thread(w.channel, "kites", owner_id=w.member)
        others = [w.fake.add_channel(w.guild, f"other-{i}") for i in range(5)]
        await w.fake.settle()

        job = await failed_unseen(
            w, thread, lambda: w.fake.set_bot_channel_permissions(w.channel, deny=VIEW_CHANNEL)
        )
        w.fake.archive_thread(thread)
        await w.fake.settle()
        assert w.bot.get_channel(thread) is None  # out of the bot's sight
        before = len(w.fake.calls)
        for other in others:
            w.fake.set_channel_nsfw(other, True)
        await w.fake.settle()
        await w.wait_idle()
        edits = [
            c
            for c in w.fake.calls[before:]
            if c.method == "PATCH" and c.path.endswith(f"/messages/{job.status_message_id}")
        ]
        assert edits == []
    assert traced(caplog) == []


async def test_a_stop_while_endings_are_being_shown_again_leaves_the_rest_for_later(
    tmp_path, caplog
):
    """Two endings kept in a channel; the admin opens it again and the bot starts showing them,
    then it is stopped while the first edit is on its way: the second is not tried on the
    closed connection (a traceback 'Session is closed'), it waits for the next start."""
    async with world(tmp_path) as w:
        cut = lambda: w.fake.set_bot_channel_permissions(w.channel, deny=VIEW_CHANNEL)  # noqa: E731
        second = await failed_unseen(w, w.channel, cut)
        third = await failed_unseen(w, w.channel, cut)
        ids = f"({second.status_message_id}|{third.status_message_id})"
        gate = w.fake.hold_requests("PATCH", rf"/messages/{ids}$", times=1)
        before = len(w.fake.calls)
        w.fake.set_bot_channel_permissions(w.channel)
        await w.fake.wait_for(
            lambda: any(c.method == "PATCH" for c in w.fake.calls[before:]),
            what="the first ending's edit on its way",
        )
        stopping = asyncio.create_task(w._stop())
        await asyncio.sleep(0.2)  # the stop under way
        gate.set()
        await stopping
        await w.fake.settle()
        # The held edit's connection went with the stop: the fake's answer had no one to go to.
        w.fake.crashes[:] = [c for c in w.fake.crashes if "Connection lost" not in c]
    assert [m for m in traced(caplog) if "fake discord" not in m] == []
