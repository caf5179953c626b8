"""Large results are split across messages, and a follow-up Discord refuses falls back to a
channel message — the member gets every image, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.civitai.simulator import Outcome
from tests.discord.harness import finished, started, world


async def test_a_result_over_the_message_size_cap_arrives_in_parts(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(5000)
        # A message may carry one upload limit's worth (40 KB): each ~30 KB image alone.
        w.fake.upload_limit = 40_000
        w.bot.publisher.message_bytes = 1
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-1",
            options={"prompt": "three cats", "quantity": 3, "quality": "low"},
        )
        job = await started(w, h)
        job = await w.wait_job(job.id, "done")
        parts = w.results_of(job.id)
        assert len(parts) == 3 == len(job.delivered_message_ids)
        assert sorted(int(m["id"]) for m in parts) == sorted(job.delivered_message_ids)
        footers = sorted(m["embeds"][0]["footer"]["text"] for m in parts)
        assert [f.split(" · ")[1] for f in footers] == ["part 1/3", "part 2/3", "part 3/3"]
        assert sum(len(m["attachments"]) for m in parts) == 3


async def test_a_refused_follow_up_falls_back_to_the_channel(tmp_path):
    """The bot's clock lags Discord's by a minute: it thinks the token still good, Discord
    says it expired (50027) — the result is posted in the channel instead, once."""
    lag = timedelta(seconds=60)
    async with world(
        tmp_path, clock=lambda: datetime.now(UTC) - lag, jobs={"token_margin_seconds": 5}
    ) as w:
        await w.grant(1000)
        # Valid for 2 more seconds at Discord; the job takes 4 (the bot thinks 62 are left).
        w.sim.script(Outcome(runtime=400), prompt="late but fine")
        old = datetime.now(UTC) - timedelta(minutes=14, seconds=58)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "late but fine", "quality": "low"},
            created_at=old,
        )
        job = await started(w, h)
        job, result = await finished(w, job)
        assert w.calls_with_code(50027), "Discord did refuse the follow-up"
        assert f"<@{w.member}>" in result["content"]
        assert len(w.results_of(job.id)) == 1
