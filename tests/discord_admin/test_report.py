"""/quota report: an admin gets a chart of the server's spending as a private image, with the
top spenders named in the message; a member is refused; an empty period says so, no image."""

from __future__ import annotations

from collections import Counter

from bot.reports.chart import HEIGHT, MODEL_COLOURS, WIDTH
from tests.discord.harness import answer, image_format, is_ephemeral, open_image, text_of, world
from tests.discord_admin.helpers import (
    COST,
    allow_everyone,
    ask,
    blocked,
    item_message,
    mod_channel,
    option,
    press,
    request,
    snapshot,
    started_job,
)

ADMIN_ONLY = "Only admins (Manage Server or the admin role) can do that."


async def test_an_admin_gets_the_chart_privately_with_the_top_spenders(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        await w.grant(1000, w.other)
        for prompt, member in (("a lighthouse", w.member), ("a comet", w.member)):
            job = await started_job(w, await request(w, prompt, member))
            await w.wait_job(job.id, "done")
        job = await started_job(w, await request(w, "a harbour", w.other))
        await w.wait_job(job.id, "done")
        # A blocked job a moderator refunded costs nothing in the report.
        item = await item_message(w, await blocked(w, "refund me", w.other))
        await press(w, item, "Refund", w.moderator)

        handle = await w.fake.slash(w.guild, w.channel, w.admin, "quota report", {"days": 7})
        message = await answer(handle)

        assert is_ephemeral(message)
        text = text_of(message)
        assert (
            f"Buzz spent in the last 7 days (UTC): **{3 * COST}** (gpt-image-2 {3 * COST})" in text
        )
        assert f"1. <@{w.member}> — {2 * COST}\n2. <@{w.other}> — {COST}" in text
        [attachment] = message["attachments"]
        assert attachment["filename"] == f"spending-{w.guild}-7d.png"
        data = w.fake.attachment_bytes(attachment)
        assert image_format(data) == "PNG"
        image = open_image(data)
        assert image.size == (WIDTH, HEIGHT)
        colours = Counter({c: n for n, c in image.convert("RGB").getcolors(WIDTH * HEIGHT) or []})
        # Today's bar and the legend's swatch in gpt-image-2's colour; no other model's colour.
        assert colours[MODEL_COLOURS["gpt-image-2"]] > 14 * 14
        others = [m for m in MODEL_COLOURS if m != "gpt-image-2"]
        assert all(colours[MODEL_COLOURS[m]] == 0 for m in others)
        # Nothing was posted in the channel for it.
        assert not any("Buzz spent" in text_of(m) for m in w.channel_messages())


async def test_an_empty_period_says_so_without_an_image(tmp_path):
    async with world(tmp_path) as w:
        handle = await w.fake.slash(w.guild, w.channel, w.admin, "quota report")
        message = await answer(handle)
        assert is_ephemeral(message)
        assert text_of(message) == "No spending in the last 30 days (UTC)."
        assert not message.get("attachments")
        days = option(w, "quota", "report", "days")
        assert (days["min_value"], days["max_value"], days.get("required", False)) == (1, 90, False)


async def test_what_the_server_paid_for_checks_is_told_even_without_member_spending(tmp_path):
    async with world(tmp_path) as w:
        await w.services.safety.record_check(w.guild, w.member, "j-check", 4, flagged=False)
        handle = await w.fake.slash(w.guild, w.channel, w.admin, "quota report")
        message = await answer(handle)
        assert is_ephemeral(message) and not message.get("attachments")
        assert text_of(message) == (
            "Buzz spent in the last 30 days (UTC): **0**\n"
            "Paid by the server for AI pre-moderation checks: **4**"
        )


async def test_what_running_jobs_hold_is_told_apart_from_the_spending(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script("never", prompt="a slow tide")
        job = await started_job(w, await request(w, "a slow tide"))
        await w.wait_job(job.id, "running")
        handle = await w.fake.slash(w.guild, w.channel, w.admin, "quota report")
        message = await answer(handle)
        assert is_ephemeral(message) and not message.get("attachments")
        assert text_of(message) == (
            "Buzz spent in the last 30 days (UTC): **0**\n"
            f"Held by running jobs (not settled yet): **{job.estimate}**"
        )


async def test_a_member_is_refused_and_sees_nothing(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await started_job(w, await request(w, "something to report"))
        job = await w.wait_job(job.id, "done")
        await w.wait_status(job, "Done")  # the last edit lands before the snapshot, not after
        await w.fake.settle()
        allow_everyone(w, "quota")  # shown to everyone by the server: the bot still refuses
        before = await snapshot(w, w.channel)

        handle = await w.fake.slash(w.guild, w.channel, w.member, "quota report", {"days": 30})
        message = await answer(handle)

        assert is_ephemeral(message) and text_of(message) == ADMIN_ONLY
        assert not message.get("attachments")
        assert await ask(w, w.moderator, "quota report") == ADMIN_ONLY
        await w.fake.settle()
        assert await snapshot(w, w.channel) == before
