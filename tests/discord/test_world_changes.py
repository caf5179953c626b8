"""The member's channel changing under a running job (a thread archived or locked by a
moderator): the Buzz settles once, and the member hears how the job ended, once."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.civitai.simulator import Outcome
from tests.discord.harness import started, text_of, world

OLD = timedelta(minutes=14, seconds=30)  # the token is dead by the time the job ends


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("locked", [False, True])
async def test_a_job_that_fails_in_a_thread_archived_meanwhile_is_told_privately(
    tmp_path, caplog, locked
):
    """A moderator archives (or locks) the thread while the job runs: its status message
    there can no longer be edited (Discord answers 400, 50083), so it would say
    "Generating" for good. The member is told by DM how it ended, once."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        thread = w.fake.add_thread(w.channel, "kites", owner_id=w.member)
        await w.fake.settle()
        w.sim.script(Outcome("fail", runtime=100), prompt="a kite")
        h = await w.fake.slash(
            w.guild,
            thread,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a kite"},
            created_at=datetime.now(UTC) - OLD,
        )
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        w.fake.archive_thread(thread, locked=locked)
        job = await w.wait_job(job.id, "failed", timeout=30)
        [dm] = await w.fake.wait_for(
            lambda: w.fake.dm_messages(w.member), what="the ending told by DM"
        )
        await w.wait_idle()
        await w.fake.settle()
        assert "failed" in text_of(dm) and "nothing was charged" in text_of(dm)
        assert len(w.fake.dm_messages(w.member)) == 1
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []
