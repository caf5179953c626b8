"""A result sent to the member by DM instead of its channel is recorded on the job (where and
why), so /jobs says so and links to the DM, not to a message its channel never had."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from bot.civitai.simulator import Outcome
from tests.discord.harness import answer, started, text_of, world
from tests.fakes.state import EMBED_LINKS

OLD = timedelta(minutes=14, seconds=30)  # the token is dead by the time the job ends


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_jobs_says_a_result_went_by_dm_and_why_and_links_to_it(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.grant(1000)
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
        await w.wait_job(job.id, "running")
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
