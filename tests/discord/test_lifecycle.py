"""A job's life as the member sees it: the status message, restarts, old interactions,
oversize results, blocked requests, and the simulator's label."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.civitai.simulator import Outcome
from tests.discord.harness import (
    answer,
    buttons,
    field_value,
    finish,
    finished,
    image_format,
    image_size,
    started,
    status_post,
    text_of,
    world,
)


async def test_status_message_shows_the_request_and_ends_done(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a tram", "size": "2560x1440", "quality": "low", "quantity": 2},
        )
        first = await status_post(h)
        text = text_of(first)
        assert "gpt-image-2" in text
        assert "size 2560x1440" in text and "quality low" in text and "quantity 2" in text
        assert "26 Buzz" in field_value(first, "Buzz")  # 13 x 2
        assert "974" in field_value(first, "Buzz")  # the balance after it
        job = await started(w, h)
        job, _ = await finished(w, job)
        status = await w.wait_status(job, "Done")
        assert "26 Buzz charged" in field_value(status, "Buzz")
        assert "974" in field_value(status, "Buzz")
        assert status["id"] == first["id"]


async def test_blocked_status_does_not_say_why(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("output_errors"))  # "blocked: the prompt was refused by moderation"
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "forbidden"}
        )
        job = await started(w, h)
        job = await w.wait_job(job.id, "blocked")
        status = await w.wait_status(job, "blocked")
        text = text_of(status)
        assert "content filter blocked" in text
        assert "refused by moderation" not in text
        assert job.charged == 0 and await w.available() == 1000
        assert w.results() == []


async def test_a_restart_while_a_job_runs_posts_the_result_once(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome(runtime=150))  # 1.5 s at the harness's speed
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "a clock"}
        )
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        assert w.results() == []
        await w.restart_bot()
        job, _ = await finished(w, job)
        await w.fake.settle()
        assert len(w.results_of(job.id)) == 1
        assert len(w.sim.submissions) == 1  # resumed, not submitted again
        await w.wait_status(job, "Done")
        assert job.charged == 286 and await w.available() == 1000 - 286


async def test_an_old_interaction_gets_its_result_as_a_channel_message(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        old = datetime.now(UTC) - timedelta(minutes=14, seconds=30)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "an old request", "quality": "low"},
            created_at=old,
        )
        job = await started(w, h)
        job, result = await finished(w, job)
        assert int(result["id"]) not in h.record.followup_ids
        assert "webhook_id" not in result
        assert f"<@{w.member}>" in result["content"]
        assert str(w.member) in [u["id"] for u in result.get("mentions", [])]
        assert w.calls_with_code(50027) == []


async def test_an_oversize_result_is_fitted_and_says_so(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.fake.upload_limit = 60_000
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={
                "prompt": "fine detail",
                "size": "3840x2160",
                "quality": "low",
                "format": "png",
            },
        )
        job = await started(w, h)
        job, result = await finished(w, job, timeout=60)
        [attachment] = result["attachments"]
        data = w.fake.attachment_bytes(attachment)
        assert len(data) <= 60_000
        fmt = {"JPEG": "JPEG", "WEBP": "WebP"}[image_format(data)]  # decodable, re-encoded
        width, height = image_size(data)
        assert abs(width / height - 3840 / 2160) < 0.01  # scaled, not cropped
        note = field_value(result, "Note")
        assert f"re-encoded as {fmt} to fit the 58.6 KB upload limit" in note
        if (width, height) != (3840, 2160):
            assert f"scaled to {width}x{height}" in note
        extension = {"JPEG": "jpg", "WebP": "webp"}[fmt]
        assert attachment["filename"].endswith(f".{extension}")
        assert result["embeds"][0]["image"]["url"].endswith(attachment["filename"])


async def test_results_say_simulated_when_the_bot_runs_on_its_own_simulator(tmp_path, monkeypatch):
    monkeypatch.delenv("CIVITAI_TOKEN", raising=False)
    monkeypatch.delenv("BOT_CIVITAI__TOKEN", raising=False)
    async with world(tmp_path, simulated=True) as w:
        assert w.services.simulated
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a placeholder", "quality": "low"},
        )
        first = await status_post(h)
        assert "SIMULATED" in text_of(first)
        job = await started(w, h)
        job, result = await finished(w, job)
        assert "SIMULATED" in text_of(result)
        assert "SIMULATED" in text_of(await w.wait_status(job, "Done"))


async def test_results_do_not_say_simulated_against_an_orchestrator(tmp_path):
    async with world(tmp_path) as w:
        assert not w.services.simulated
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a real one", "quality": "low"},
        )
        job = await started(w, h)
        job, result = await finished(w, job)
        assert "SIMULATED" not in text_of(result)
        await asyncio.sleep(0)


async def test_an_old_interaction_in_a_channel_the_bot_cannot_post_in_gets_a_dm(tmp_path):
    from tests.fakes.state import SEND_MESSAGES

    async with world(tmp_path) as w:
        await w.grant(1000)
        w.fake.set_bot_channel_permissions(w.channel, deny=SEND_MESSAGES)
        await w.fake.settle()
        old = datetime.now(UTC) - timedelta(minutes=14, seconds=30)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a letter", "quality": "low"},
            created_at=old,
        )
        job = await started(w, h)  # an interaction answer needs no channel permission
        job = await w.wait_job(job.id, "done", "failed")
        assert job.status.value == "done"
        [dm] = w.fake.dm_messages(w.member)
        assert f"<#{w.channel}>" in dm["content"]
        assert f"result of job {job.id}" in text_of(dm) and len(dm["attachments"]) == 1
        # No buttons there: each would act on a job the DM cannot reach.
        assert buttons(dm) == {}
        assert w.results() == []
        assert w.calls_with_code(50027) == []


async def test_an_interaction_about_to_expire_edits_its_status_through_the_channel(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        old = datetime.now(UTC) - timedelta(minutes=14, seconds=57)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "just in time", "quality": "low"},
            created_at=old,
        )
        job = await started(w, h)
        job, result = await finished(w, job)
        await w.wait_status(job, "Done")
        assert f"<@{w.member}>" in result["content"]
        assert w.calls_with_code(50027) == []
        assert w.calls_with_code(10015) == []


async def test_a_blocked_job_reason_is_not_shown_either(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("blob_blocked"))  # the image's blockedReason is "nsfw"
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "edgy"}
        )
        job = await started(w, h)
        job = await w.wait_job(job.id, "blocked")
        status = await w.wait_status(job, "blocked")
        assert "nsfw" not in text_of(status).lower()
        assert w.results() == []


async def test_buttons_work_after_a_restart(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "before", "quality": "low"},
        )
        job, result = await finish(w, h)
        w.sim.script(Outcome("never"))
        h2 = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "running"}
        )
        running = await started(w, h2)
        await w.wait_job(running.id, "running")

        await w.restart_bot()

        details = await w.fake.click(int(result["id"]), buttons(result)["Details"], w.member)
        assert job.id in text_of(await answer(details)) and details.ephemeral
        cancel = await w.fake.click(
            running.status_message_id, buttons(w.status_message(running))["Cancel"], w.member
        )
        assert "Canceled job" in (await answer(cancel))["content"]
        await w.wait_job(running.id, "canceled")
        reroll = await w.fake.click(int(result["id"]), buttons(result)["Re-roll"], w.member)
        again = await started(w, reroll)
        again, _ = await finished(w, again)
        assert again.parent_job_id == job.id and again.charged == 13


async def test_a_status_message_posted_just_before_a_restart_follows_the_job(tmp_path):
    """The bot dies between Discord making a job's status message and recording it: after the
    start the job runs, and that message says Done — not "Queued" with a Cancel for good."""
    async with world(tmp_path) as w:
        await w.grant(1000)

        async def dies(*args: object, **kwargs: object) -> None:
            await asyncio.Event().wait()

        w.bot.answer_wait = 0  # it dies: what is under way is not waited for
        w.bot.engine.launch = dies  # type: ignore[method-assign]
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a lighthouse", "quality": "low"},
        )
        posted = await status_post(h)
        job = await w.only_job()
        await w.restart_bot()
        w.bot.answer_wait = 0  # the dead process's command is not this one's to wait for
        job, _ = await finished(w, job)
        assert job.status_message_id == int(posted["id"])
        status = await w.wait_status(job, "Done")
        assert "Cancel" not in buttons(status)
        assert "13 Buzz charged" in field_value(status, "Buzz")
