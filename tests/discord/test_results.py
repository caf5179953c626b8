"""The result message's buttons: Re-roll, Edit, Details, Delete."""

from __future__ import annotations

import re

from bot.civitai.simulator import Outcome
from tests.discord.harness import (
    World,
    answer,
    buttons,
    field_value,
    finish,
    finished,
    is_ephemeral,
    open_image,
    png,
    sent_bytes,
    started,
    text_of,
    world,
)
from tests.discord_admin.helpers import Clock


def pixels(data: bytes) -> bytes:
    return open_image(data).convert("RGB").tobytes()


async def first_result(w: World, **options):
    options.setdefault("prompt", "a lantern")
    h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
    return await finish(w, h)


# -- Re-roll ---------------------------------------------------------------------------------


async def test_reroll_by_another_member_charges_the_clicker_when_allowed(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(500, w.other)
        await w.set_guild(reroll_anyone=True)
        job, result = await first_result(w)
        assert await w.available() == 1000 - 286

        click = await w.fake.click(int(result["id"]), buttons(result)["Re-roll"], w.other)
        again = await started(w, click)
        assert again.member_id == w.other and again.parent_job_id == job.id
        again, second = await finished(w, again)
        assert again.charged == 286
        assert await w.available(w.other) == 500 - 286
        assert await w.available() == 1000 - 286  # the original requester pays nothing more
        first, rerolled = (s["steps"][0]["input"] for s in w.sim.submissions)
        assert first == rerolled
        assert f"<@{w.other}>" in text_of(second)


async def test_reroll_by_another_member_is_refused_when_not_allowed(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(500, w.other)
        job, result = await first_result(w)
        click = await w.fake.click(int(result["id"]), buttons(result)["Re-roll"], w.other)
        reply = await answer(click)
        assert click.ephemeral and "Only the member who asked" in reply["content"]
        await w.fake.settle()
        assert [j.id for j in await w.jobs()] == [job.id]
        assert await w.available(w.other) == 500 and len(w.sim.submissions) == 1


async def test_reroll_of_an_edit_reuses_the_same_sources(tmp_path):
    source = png(64, 64, (90, 30, 160))
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-1",
            options={"prompt": "add stars", "quality": "low"},
            attachments={"image": ("sky.png", source, "image/png")},
        )
        _, result = await finish(w, h)
        click = await w.fake.click(int(result["id"]), buttons(result)["Re-roll"], w.member)
        again = await started(w, click)
        again, _ = await finished(w, again)
        first, rerolled = (s["steps"][0]["input"] for s in w.sim.submissions)
        assert rerolled == first
        [url] = rerolled["images"]
        assert pixels(sent_bytes(w.sim, url)[1]) == pixels(source)
        assert again.charged == 25 and await w.available() == 1000 - 50


async def test_reroll_of_an_edit_whose_source_was_pruned_says_why(tmp_path):
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-1",
            options={"prompt": "add stars", "quality": "low"},
            attachments={"image": ("sky.png", png(64, 64, (90, 30, 160)), "image/png")},
        )
        _, result = await finish(w, h)
        clock.advance(days=31)  # past the 30-day retention
        report = await w.services.retention.prune(trigger="test")
        assert report.jobs == 1
        click = await w.fake.click(int(result["id"]), buttons(result)["Re-roll"], w.member)
        reply = await answer(click)
        assert click.ephemeral and "deleted after 30 days" in reply["content"]
        assert len(await w.jobs()) == 1 and await w.available() == 1000 - 25


async def test_a_second_reroll_click_while_the_first_is_admitted_starts_nothing(tmp_path):
    """A double click on Re-roll is one request, not two paid jobs: the second click, while the
    first is still being admitted, is told privately it is being handled. A deliberate re-roll
    once the first was answered still starts another job."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        job, result = await first_result(w, size="1024x768", quality="low")
        reroll = buttons(result)["Re-roll"]
        # The first click's public status message waits for Discord: its answer is pending.
        gate = w.fake.hold_requests("POST", r"/webhooks/\d+/[^/]+$")
        try:
            first = await w.fake.click(int(result["id"]), reroll, w.member)
            await w.fake.wait_for(
                lambda: any(
                    f"/{first.token}" in c.path
                    for c in w.fake.calls
                    if c.method == "POST" and "/webhooks/" in c.path
                ),
                what="the first re-roll's status message",
            )
            second = await w.fake.click(int(result["id"]), reroll, w.member)
            reply = await second.wait_for_original(
                lambda m: "Started" in m["content"] or "already" in m["content"]
            )
            assert second.ephemeral and "already being handled" in reply["content"], reply
        finally:
            gate.set()
        again, _ = await finished(w, await started(w, first))
        await w.fake.settle()
        assert len(await w.jobs()) == 2 and await w.available() == 1000 - 2 * 13
        # Later, on purpose: another re-roll.
        third = await started(w, await w.fake.click(int(result["id"]), reroll, w.member))
        assert third.parent_job_id == job.id and third.id != again.id


# -- Edit ------------------------------------------------------------------------------------


async def test_edit_from_a_result_uses_the_result_image(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        job, result = await first_result(w, size="512x512", quality="low")
        [attachment] = result["attachments"]
        shown = w.fake.attachment_bytes(attachment)

        click = await w.fake.click(int(result["id"]), buttons(result)["Edit"], w.member)
        await click.response()
        assert click.modal is not None
        submitted = await w.fake.submit_modal(click, {"prompt": "now at night"})
        edit = await started(w, submitted)
        edit, _ = await finished(w, edit)
        assert edit.operation == "editImage" and edit.parent_job_id == job.id
        step = w.sim.submissions[1]["steps"][0]["input"]
        assert step["model"] == "gpt-image-2" and step["prompt"] == "now at night"
        [url] = step["images"]
        assert pixels(sent_bytes(w.sim, url)[1]) == pixels(shown)


async def test_edit_from_a_result_with_several_images_asks_which(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, size="512x512", quality="low", quantity=2)
        shown = [w.fake.attachment_bytes(a) for a in result["attachments"]]
        assert pixels(shown[0]) != pixels(shown[1])

        click = await w.fake.click(int(result["id"]), buttons(result)["Edit"], w.member)
        await click.response()
        submitted = await w.fake.submit_modal(click, {"prompt": "in colour", "which": "2"})
        edit = await started(w, submitted)
        await finished(w, edit)
        [url] = w.sim.submissions[1]["steps"][0]["input"]["images"]
        assert pixels(sent_bytes(w.sim, url)[1]) == pixels(shown[1])


async def test_edit_from_a_result_refuses_a_number_out_of_range(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, size="512x512", quality="low", quantity=2)
        click = await w.fake.click(int(result["id"]), buttons(result)["Edit"], w.member)
        await click.response()
        submitted = await w.fake.submit_modal(click, {"prompt": "in colour", "which": "3"})
        reply = await answer(submitted)
        assert submitted.ephemeral and "**image**" in reply["content"]
        assert "1 to 2" in reply["content"]
        assert len(await w.jobs()) == 1 and len(w.sim.submissions) == 1


# -- Details ---------------------------------------------------------------------------------


async def test_details_show_the_full_prompt_options_workflow_and_buzz(tmp_path):
    prompt = "a very detailed harbour scene, " * 60  # ~1,900 characters
    async with world(tmp_path) as w:
        await w.grant(1000)
        job, result = await first_result(w, prompt=prompt.strip(), quality="medium")
        assert prompt.strip() not in text_of(result)  # the result embed shortens it

        click = await w.fake.click(int(result["id"]), buttons(result)["Details"], w.other)
        reply = await answer(click)
        assert click.ephemeral and is_ephemeral(reply)
        text = text_of(reply)
        assert prompt.strip() in text
        assert "quality medium" in text
        assert job.workflow_id and job.workflow_id in text
        assert "held 78" in text and "charged 78" in text


async def test_details_say_when_the_generation_started(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome(runtime=10))  # ends within the first long-poll
        _, result = await first_result(w, quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Details"], w.member)
        timings = field_value(await answer(click), "Timings")
        assert "started <t:" in timings, timings


# A prompt is shown as the member wrote it: Discord's markdown in it is not applied, so no
# underscore or asterisk goes missing and no masked link is posted under the bot's name.
MARKDOWN_PROMPT = (
    "ultra_detailed, photo_real, **hdr** ||x|| [a](https://a.example) [free](https://b.example)"
)
# A markdown character after no backslash, or after an escaped one (an even number of them).
UNESCAPED = re.compile(r"(?<!\\)(?:\\\\)*(?:[_*|~`]|\[[^\]]*\]\()")


def shows_literally(shown: str, prompt: str) -> bool:
    """Whether Discord renders `shown` as the text `prompt`: every markdown character in it
    escaped, nothing else changed."""
    return not UNESCAPED.search(shown) and re.sub(r"\\(.)", r"\1", shown) == prompt


async def test_a_prompt_with_markdown_is_shown_as_written(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        job, result = await first_result(w, prompt=MARKDOWN_PROMPT, quality="low")
        assert job.prompt == MARKDOWN_PROMPT  # sent upstream unchanged
        status = w.status_message(job)
        click = await w.fake.click(int(result["id"]), buttons(result)["Details"], w.member)
        details = await answer(click)
        for message in (status, result, details):
            shown = message["embeds"][0]["description"]
            assert shows_literally(shown, MARKDOWN_PROMPT), shown


# -- Delete ----------------------------------------------------------------------------------


async def test_delete_by_the_requester(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Delete"], w.member)
        await click.response()
        await w.fake.wait_for(lambda: w.fake.is_deleted(int(result["id"])), what="deleted")
        assert w.results() == []


async def test_delete_by_another_member_is_refused(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Delete"], w.other)
        reply = await answer(click)
        assert click.ephemeral and "Only the member who asked" in reply["content"]
        await w.fake.settle()
        assert not w.fake.is_deleted(int(result["id"]))
        assert len(w.results()) == 1


async def test_delete_by_a_moderator(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Delete"], w.moderator)
        await click.response()
        await w.fake.wait_for(lambda: w.fake.is_deleted(int(result["id"])), what="deleted")
        assert w.results() == []


async def test_edit_from_a_result_posted_above_the_attachment_cap_runs(tmp_path):
    """The members' attachment cap is below what the server lets the bot upload: the bot's
    own posted result is still edited, not refused as too large."""
    async with world(tmp_path, media={"max_attachment_bytes": 10_000}) as w:
        await w.grant(1000)
        job, result = await first_result(w, size="1024x1024", quality="low")
        assert result["attachments"][0]["size"] > 10_000
        click = await w.fake.click(int(result["id"]), buttons(result)["Edit"], w.member)
        await click.response()
        submitted = await w.fake.submit_modal(click, {"prompt": "now at night"})
        edit = await started(w, submitted)
        edit, _ = await finished(w, edit)
        assert edit.parent_job_id == job.id
