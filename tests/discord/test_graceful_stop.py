"""An orderly stop (SIGTERM) while a command is under way: the command is answered before the
connection to Discord closes, so an admin is not left guessing whether it happened."""

from __future__ import annotations

import asyncio

from tests.discord.harness import started, text_of, world
from tests.discord.test_discord_faults import traced
from tests.store.read_only import write_locked


async def test_a_grant_under_way_at_the_stop_is_confirmed_to_the_admin(tmp_path):
    async with world(tmp_path) as w:
        # The grant is written; its confirmation is on its way when the stop begins.
        gate = w.fake.hold_requests("POST", r"^/api/v10/webhooks/\d+/[^/]+$")
        handle = await w.fake.slash(
            w.guild, w.channel, w.admin, "quota grant", options={"member": w.member, "amount": 500}
        )
        await w.fake.wait_for(
            lambda: any(c.method == "POST" and "/webhooks/" in c.path for c in w.fake.calls),
            what="the confirmation on its way",
        )
        assert await w.available() == 500
        stopping = asyncio.create_task(w._stop())
        async with asyncio.timeout(10):
            while not w.bot._stopping:
                await asyncio.sleep(0.01)
        gate.set()
        await stopping
        [confirmation] = handle.followups
        assert "Granted 500 Buzz" in text_of(confirmation)


async def test_the_log_line_of_a_job_that_just_ended_is_posted_before_the_stop(tmp_path):
    """A job ends as the bot is told to stop: its line in the server's log channel (the
    admins' record of spending) still goes out, instead of being dropped with the connection."""
    async with world(tmp_path) as w:
        logs = w.fake.add_channel(w.guild, "image-log")
        await w.set_guild(log_channel_id=logs)
        await w.grant(1000)
        gate = w.fake.hold_requests("POST", rf"/channels/{logs}/messages$")
        handle = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a last meadow", "quality": "low"},
        )
        job = await started(w, handle)
        await w.wait_job(job.id, "done")
        await w.fake.wait_for(
            lambda: any(c.path.endswith(f"/{logs}/messages") for c in w.fake.calls),
            what="the log line on its way",
        )
        stopping = asyncio.create_task(w._stop())
        async with asyncio.timeout(10):
            while not w.bot._stopping:
                await asyncio.sleep(0.01)
        gate.set()
        await stopping
        [line] = w.fake.channel_messages(logs)
        assert f"job `{job.id}`" in line["content"]


async def test_a_command_still_under_way_after_the_wait_is_one_warning(tmp_path, caplog):
    """A command outlives the stop's wait (its write waits for a database lock another process
    holds): the stop goes on, and its answer, refused by the closed connection, is one warning
    naming the stop, not a traceback."""
    async with world(tmp_path) as w:
        w.bot.answer_wait = 0.05
        with write_locked(tmp_path / "bot.sqlite3"):
            handle = await w.fake.slash(
                w.guild,
                w.channel,
                w.admin,
                "quota grant",
                options={"member": w.member, "amount": 500},
            )
            await handle.response()  # the "thinking…"; the grant waits for the lock
            await w._stop()
        await w.fake.wait_for(
            lambda: (
                any(
                    "stopping" in r.getMessage()
                    for r in caplog.records
                    if r.name.startswith("bot.discord_adapter.replies")
                )
                or traced(caplog)
            ),
            what="the command's end",
        )
        assert traced(caplog) == []
        assert await w.available() == 500  # the grant itself was made
