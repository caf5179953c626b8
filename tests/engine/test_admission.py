"""Admission: each refusal in DESIGN.md's order, with its numbers, and nothing held for it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.catalog import Model, Operation
from bot.config import GuildDefaults
from bot.engine.requests import JobRequest, Refusal, RefusalReason, Requester
from bot.review import Action, ReviewService
from bot.store.db import Conn
from bot.store.jobs import JobStatus
from tests.engine.harness import CHANNEL, GUILD, MEMBER, Harness, harness


async def _nothing_held(h: Harness, before: int) -> None:
    assert await h.available() == before
    assert (await h.db.fetchone("SELECT COUNT(*) FROM holds"))[0] == 0
    assert (await h.db.fetchone("SELECT COUNT(*) FROM jobs"))[0] == 0
    assert h.sim.submissions == []


async def _refused(h: Harness, request: JobRequest, reason: RefusalReason) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await h.engine.submit(request)
    assert caught.value.reason is reason, caught.value.message
    return caught.value


async def test_refusals_come_in_designs_order(tmp_path):
    async with harness(tmp_path) as h:
        await h.grant(100)

        # Everything wrong at once: banned wins.
        def everything_wrong(tx: Conn) -> None:
            h.moderation.ban_in(tx, GUILD, MEMBER, actor_id=1, reason="spam", days=None)
            h.guilds.set_channel_in(tx, GUILD, CHANNEL, False, actor_id=1)
            # The default model cannot be switched off: another one is the default first.
            h.guilds.update_in(tx, GUILD, default_model="gpt-image-1")
            h.guilds.set_model_in(tx, GUILD, "gpt-image-2", False, actor_id=1)

        await h.db.write(everything_wrong)
        bad = h.request("", size="1000x1000", quality="high")
        await _refused(h, bad, RefusalReason.BANNED)
        await h.db.write(h.moderation.unban_in, GUILD, MEMBER, actor_id=1)
        await _refused(h, bad, RefusalReason.CHANNEL)
        await h.db.write(h.guilds.set_channel_in, GUILD, CHANNEL, None, actor_id=1)
        refusal = await _refused(h, bad, RefusalReason.MODEL_DISABLED)
        assert "gpt-image-2" in refusal.message
        await h.db.write(h.guilds.set_model_in, GUILD, "gpt-image-2", True, actor_id=1)
        refusal = await _refused(h, bad, RefusalReason.INVALID)
        assert {e.field for e in refusal.errors} == {"prompt", "size"}
        await h.db.write(h.guilds.update_in, GUILD, confirm_above=200)
        good = h.request("a fox", size="1024x1024", quality="high", confirmed=False)
        refusal = await _refused(h, good, RefusalReason.CONFIRM)
        assert refusal.buzz == 286 and "286" in refusal.message and "200" in refusal.message
        refusal = await _refused(h, h.request("a fox", quality="high"), RefusalReason.BALANCE)
        assert refusal.message.startswith("this needs 286 Buzz; you have 100")
        await _nothing_held(h, 100)


async def test_balance_refusal_names_the_refill(tmp_path):
    # Saturday 21 Nov 2026: the weekly refill is on Monday.
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    async with harness(tmp_path, clock=lambda: now) as h:
        await h.db.write(h.ledger.set_allowance_in, GUILD, "default", 0, 1000, "weekly", actor_id=1)
        first = await h.engine.submit(h.request("one", size="3840x2160", quality="high"))
        assert first.hold_amount == 533
        refusal = await _refused(
            h, h.request("two", size="3840x2160", quality="high"), RefusalReason.BALANCE
        )
        assert refusal.message == (
            "this needs 533 Buzz; you have 467, refilling to 1,000 on Monday 00:00 UTC"
        )
        assert refusal.balance == 467


async def test_guild_budget_caps_all_members_together(tmp_path):
    async with harness(tmp_path) as h:
        for member in (1, 2):
            await h.grant(1000, member)
        await h.db.write(h.guilds.update_in, GUILD, budget_amount=300, budget_period="daily")
        await h.engine.submit(h.request("a", member=1, quality="high"))  # 286
        refusal = await _refused(
            h, h.request("b", member=2, quality="medium"), RefusalReason.BUDGET
        )
        assert "78" in refusal.message and "14" in refusal.message
        assert await h.available(2) == 1000


async def test_concurrency_limits_for_the_member_then_the_guild(tmp_path):
    defaults = GuildDefaults(
        confirm_above=100_000, per_member_concurrency=2, per_guild_concurrency=3
    )
    async with harness(tmp_path, speed=0.05, defaults=defaults) as h:
        for member in (1, 2):
            await h.grant(5000, member)
        for i in range(2):
            h.sim.script("never")
            await h.engine.submit(h.request(f"m1 {i}", member=1, quality="low"))
        refusal = await _refused(
            h, h.request("m1 again", member=1, quality="low"), RefusalReason.MEMBER_BUSY
        )
        assert "2" in refusal.message
        h.sim.script("never")
        await h.engine.submit(h.request("m2", member=2, quality="low"))
        await _refused(h, h.request("m2 again", member=2, quality="low"), RefusalReason.GUILD_BUSY)
        assert await h.available(2) == 5000 - 13


async def test_money_is_checked_before_the_budget_and_the_job_limits(tmp_path):
    """DESIGN.md's order: balance, guild budget, concurrency. A member who cannot afford the
    request was told the server was busy ("try again in a minute"), or that its budget was
    spent, and only on trying again that their own Buzz was short."""
    defaults = GuildDefaults(confirm_above=100_000, per_member_concurrency=1)
    async with harness(tmp_path, speed=0.05, defaults=defaults) as h:
        await h.grant(100)
        h.sim.script("never")
        await h.engine.submit(h.request("running", quality="low"))  # 13
        await h.db.write(h.guilds.update_in, GUILD, budget_amount=30, budget_period="daily")
        refusal = await _refused(h, h.request("too dear", quality="high"), RefusalReason.BALANCE)
        assert refusal.message.startswith("this needs 286 Buzz; you have 87")
        await h.grant(1000)
        await _refused(h, h.request("over budget", quality="high"), RefusalReason.BUDGET)
        await _refused(h, h.request("still running", quality="low"), RefusalReason.MEMBER_BUSY)


async def test_a_held_job_waits_for_a_moderator_then_runs_or_is_released(tmp_path):
    async def prompt_filter(guild_id: int, prompt: str) -> str | None:
        return "matched filter 'castle'" if "castle" in prompt else None

    async with harness(tmp_path, prompt_filter=prompt_filter) as h:
        await h.grant(1000)
        held = await h.engine.submit(h.request("a castle", quality="medium"))
        assert held.status is JobStatus.HELD and held.hold_amount == 78
        [(item, _)] = h.reviews.items
        assert item.kind == "held" and item.reason == "matched filter 'castle'"
        [message] = h.publisher.messages(held.id)
        assert "castle" not in message, "the member cannot probe the filter"
        assert h.sim.submissions == []
        review = ReviewService(h.db, h.engine, h.jobs, h.ledger, h.moderation, h.guilds)
        await review.act(GUILD, item.id, Action.APPROVE, actor_id=42)
        await h.settle_all()
        assert (await h.job(held.id)).status is JobStatus.DONE
        other = await h.engine.submit(h.request("another castle", quality="medium"))
        [_, (other_item, _)] = h.reviews.items
        await review.act(GUILD, other_item.id, Action.REJECT, actor_id=42)
        rejected = await h.job(other.id)
        assert rejected.status is JobStatus.REJECTED and rejected.charged == 0
        assert await h.available() == 1000 - 78
        assert len(h.sim.submissions) == 1


async def test_edit_sources_travel_as_uploaded_blobs_and_price_from_the_first_image(tmp_path):
    import io

    from PIL import Image

    from bot.catalog import RequestOptions
    from bot.store.jobs import SourceImage

    buffer = io.BytesIO()
    Image.new("RGB", (1536, 1024), "blue").save(buffer, "PNG")
    source = SourceImage("image", "image/png", 1536, 1024, buffer.getvalue())
    async with harness(tmp_path) as h:
        await h.grant(1000)
        request = JobRequest(
            Requester(GUILD, CHANNEL, MEMBER),
            Model.GPT_IMAGE_2,
            Operation.EDIT,
            RequestOptions(prompt="make it winter", quality="high"),
            sources=(source,),
            confirmed=True,
        )
        job = await h.engine.submit(request)
        assert job.hold_amount == 221  # 1536x1024 → the 1024x1536 tier, high
        assert job.step["input"]["images"] == ["source://0"]
        await h.settle_all()
        [template] = h.sim.submissions
        sent = template["steps"][0]["input"]["images"][0]
        [uploaded] = h.sim.uploads
        assert h.sim.blobs.blob_id_of(sent) == uploaded
        assert h.sim.blobs.get(uploaded).data == source.data
        assert (await h.job(job.id)).status is JobStatus.DONE


async def test_a_member_withdrawing_a_held_job_closes_its_review_item(tmp_path):
    async def prompt_filter(guild_id: int, prompt: str) -> str | None:
        return "matched" if "castle" in prompt else None

    async with harness(tmp_path, prompt_filter=prompt_filter) as h:
        await h.grant(500)
        held = await h.engine.submit(h.request("a castle", quality="medium"))
        [(item, _)] = h.reviews.items
        await h.engine.cancel(held.id, Requester(GUILD, CHANNEL, MEMBER))
        closed = await h.moderation.item(item.id)
        assert closed is not None and closed.status == "withdrawn"
        assert h.reviews.changed == [item.id], "the moderators' message is refreshed"
        assert (await h.job(held.id)).status is JobStatus.CANCELED
        assert await h.available() == 500


async def test_with_whatif_on_an_edit_is_priced_by_the_orchestrator_from_its_sources(
    tmp_path, caplog
):
    """civitai.whatif asks the orchestrator's price of an edit too: its sources go by their
    uploads (which the submit then reuses), not as the stored step's source://N placeholders
    the orchestrator cannot load (every edit's whatif refused, with a warning each)."""
    import io

    from PIL import Image

    from bot.catalog import RequestOptions
    from bot.engine.engine import EngineSettings
    from bot.engine.follow import LongPoll
    from bot.store.jobs import SourceImage

    buffer = io.BytesIO()
    Image.new("RGB", (1536, 1024), "blue").save(buffer, "PNG")
    source = SourceImage("image", "image/png", 1536, 1024, buffer.getvalue())
    settings = EngineSettings(policy=LongPoll(60), retry_base=0.01, retry_cap=0.05, whatif=True)
    async with harness(tmp_path, settings=settings) as h:
        await h.grant(1000)
        request = JobRequest(
            Requester(GUILD, CHANNEL, MEMBER),
            Model.GPT_IMAGE_2,
            Operation.EDIT,
            RequestOptions(prompt="make it winter", quality="high"),
            sources=(source,),
            confirmed=True,
        )
        job = await h.engine.submit(request)
        assert job.whatif == 221 and job.hold_amount == 221
        await h.settle_all()
        assert (await h.job(job.id)).status is JobStatus.DONE
        assert len(h.sim.uploads) == 1  # the whatif's upload is the one the submit sent
        assert not [r for r in caplog.records if "whatif failed" in r.getMessage()]
