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


async def test_a_413_shrinks_the_upload_instead_of_resending_the_same_bytes(tmp_path):
    """Discord told the interaction 10 MiB, but the channel now takes far less (boosts lost):
    the first post is refused with 413, and the images are fitted again, smaller."""
    async with world(tmp_path) as w:
        await w.grant(5000)
        w.sim.script(Outcome(runtime=200), prompt="two owls")
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-1",
            options={"prompt": "two owls", "quantity": 2, "quality": "low", "format": "png"},
        )
        job = await started(w, h)
        w.fake.upload_limit = 12_000  # below what the 1024x1024 PNGs weigh (~20 KB)
        job = await w.wait_job(job.id, "done", "failed")
        assert job.status.value == "done", job.error
        assert w.calls_with_code(40005), "Discord did refuse the first upload (413)"
        parts = w.results_of(job.id)
        assert len(parts) == len(job.delivered_message_ids) >= 1
        sizes = [a["size"] for m in parts for a in m["attachments"]]
        assert len(sizes) == 2 and max(sizes) <= 12_000
        notes = " ".join(f["value"] for m in parts for f in m["embeds"][0]["fields"])
        assert "to fit the" in notes  # the member is told the images were re-encoded
