"""Discord faults while jobs are in flight: a slow or refusing side channel (the log channel,
the status message) never costs a member their result or the news of how their job ended."""

from __future__ import annotations

import logging

from tests.discord.harness import started, world
from tests.discord.test_discord_faults import create, traced


async def test_a_stalled_log_channel_holds_up_no_status_and_no_delivery(tmp_path, caplog):
    """The log channel is rate limited (its posts wait): each finished job's status still
    says Done and every result is posted; the log lines follow when the channel answers."""
    async with world(tmp_path) as w:
        logs = w.fake.add_channel(w.guild, "image-log")
        await w.set_guild(log_channel_id=logs)
        await w.grant(1000)
        gate = w.fake.hold_requests("POST", rf"/channels/{logs}/messages$")
        try:
            jobs = [await started(w, await create(w, f"a lighthouse {n}")) for n in range(3)]
            for job in jobs:
                await w.wait_result(job.id)
                await w.wait_status(await w.wait_job(job.id, "done"), "Done")
        finally:
            gate.set()
        await w.fake.wait_for(
            lambda: len(w.fake.channel_messages(logs)) == 3, what="three log lines"
        )
    assert traced(caplog) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
