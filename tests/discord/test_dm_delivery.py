"""A result sent to the member by DM instead of its channel is recorded on the job (where and
why), so /jobs says so and links to the DM, not to a message its channel never had."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta

from bot.civitai.simulator import Outcome
from bot.store.jobs import JobRecord
from tests.discord.harness import World, answer, started, text_of, world
from tests.fakes.state import EMBED_LINKS

OLD = timedelta(minutes=14, seconds=30)  # the token is dead by the time the job ends


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def running_old_kite(w: World) -> JobRecord:
    """A job running whose interaction token is dead by the time it ends."""
    w.sim.script(Outcome(runtime=100), prompt="a kite")
    h = await w.fake.slash(
        w.guild,
        w.channel,
        w.member,
        "create gpt-image-2",
        {"prompt": "a kite", "quality": "low"},
        created_at=datetime.now(UTC) - OLD,
    )
    job = await started(w, h)
    return await w.wait_job(job.id, "running")


async def test_jobs_says_a_result_went_by_dm_and_why_and_links_to_it(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await running_old_kite(w)
        w.fake.set_bot_channel_permissions(w.channel, deny=EMBED_LINKS)
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        [dm] = w.fake.dm_messages(w.member)
        dm_channel = int(dm["channel_id"])
        assert (job.dm_channel_id, job.dm_reason) == (
            dm_channel,
            "embeds cannot be shown in this channel (Embed Links)",
        )
        await w.wait_status(job, "sent to you by DM")

        message = await answer(await w.fake.slash(w.guild, w.channel, w.member, "jobs"))

        text = text_of(message)
        assert "sent to you by DM: embeds cannot be shown in this channel" in text
        assert "posted below" not in text
        assert f"(https://discord.com/channels/@me/{dm_channel}/{dm['id']})" in text
        assert f"/{w.channel}/{dm['id']}" not in text  # no link to a message the channel lacks
    assert traced(caplog) == []


async def test_a_dm_whose_answer_a_restart_cut_off_is_still_recorded_as_a_dm(tmp_path, caplog):
    """The result went by DM, then the bot stopped before Discord's answer came: the next run
    finds the DM (not posting it again) and records it, so /jobs links to the DM, not to a
    message the channel never had."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await running_old_kite(w)
        dm_channel = w.fake.world.dm_channel_for(w.member).id
        gate = w.fake.hold_requests(
            "POST", rf"/channels/{dm_channel}/messages$", answer_only=True, times=1
        )
        w.fake.set_bot_channel_permissions(w.channel, deny=EMBED_LINKS)
        await w.fake.wait_for(lambda: w.fake.dm_messages(w.member), what="the DM posted")
        await w.restart_bot()
        gate.set()  # the old run's answer, long gone

        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        [dm] = w.fake.dm_messages(w.member)  # found, not sent again
        assert job.dm_channel_id == dm_channel and job.dm_reason

        text = text_of(await answer(await w.fake.slash(w.guild, w.channel, w.member, "jobs")))
        assert f"(https://discord.com/channels/@me/{dm_channel}/{dm['id']})" in text
        assert "posted below" not in text
    assert traced(caplog) == []


async def test_a_dm_the_database_could_not_record_is_still_a_delivered_result(
    tmp_path, caplog, monkeypatch
):
    """The result went by DM, then writing that down failed (the database locked): the member
    has it, so the job is done and says so, and it is not sent a second time."""

    async def locked(*args: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    async with world(tmp_path) as w:
        await w.grant(1000)
        monkeypatch.setattr(w.services.jobs, "record_dm", locked)
        job = await running_old_kite(w)
        w.fake.set_bot_channel_permissions(w.channel, deny=EMBED_LINKS)
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        await w.wait_status(job, "sent to you by DM")
        await w.fake.settle()
        assert len(w.fake.dm_messages(w.member)) == 1
        assert job.charged is not None and await w.available() == 1000 - job.charged
    assert traced(caplog) == []
    assert any("not recorded as such" in r.getMessage() for r in caplog.records)
