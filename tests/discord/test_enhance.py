"""`enhance:True`: a promptEnhancement job runs first (its own small charge), the member sees
the enhanced prompt with its issues and recommendations privately, and the image job is
admitted only after Use enhanced / Keep mine — or not at all after Cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.civitai.simulator import Outcome
from bot.discord_adapter.under_way import finish_interactions
from bot.store.jobs import JobRecord
from tests.discord.harness import (
    World,
    answer,
    buttons,
    field_value,
    finished,
    is_ephemeral,
    png,
    sent_bytes,
    started,
    text_of,
    world,
)

ENHANCED = (
    "a cat on a windowsill, richly detailed, with soft natural light, a balanced composition "
    "and sharp focus."
)


async def enhance(w: World, prompt: str = "a cat on a windowsill", **options: Any):
    """Run /create gpt-image-2 with enhance:True to the private choice: (enhancement, choice)."""
    options = {"prompt": prompt, "quality": "low", "enhance": True, **options}
    h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
    status = await h.wait_for_original(lambda m: "Enhancing your prompt" in m["content"])
    assert h.ephemeral and is_ephemeral(status)
    choice = await h.wait_for_followup(1, timeout=20)
    assert is_ephemeral(choice)
    [job] = await w.jobs()
    job = await w.wait_job(job.id, "done")
    return job, choice


async def test_use_enhanced_starts_the_image_with_the_enhanced_prompt(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        enhancement, choice = await enhance(w)
        assert (enhancement.model, enhancement.operation) == (
            "prompt-enhancement",
            "promptEnhancement",
        )
        assert enhancement.charged == 1 and await w.available() == 999
        text = text_of(choice)
        assert ENHANCED in text
        issues = field_value(choice, "Issues")
        assert "The prompt is short" in issues and "No lighting is described" in issues
        assert "Name the light" in field_value(choice, "Recommendations")
        assert set(buttons(choice)) == {"Use enhanced", "Keep mine", "Cancel"}
        [step] = w.sim.submissions[0]["steps"]
        assert step == {
            "$type": "promptEnhancement",
            "input": {"ecosystem": "openai", "prompt": "a cat on a windowsill"},
        }
        # Nothing of the image is held before the choice.
        assert len(await w.jobs()) == 1 and await w.holds() == 1

        click = await w.fake.click(int(choice["id"]), buttons(choice)["Use enhanced"], w.member)
        image = await started(w, click)
        image, result = await finished(w, image)
        assert image.prompt == ENHANCED and image.parent_job_id == enhancement.id
        assert w.sim.submissions[1]["steps"][0]["input"]["prompt"] == ENHANCED
        assert image.charged == 13 and await w.available() == 1000 - 1 - 13
        assert ENHANCED[:50] in text_of(result)
        details = await w.fake.click(int(result["id"]), buttons(result)["Details"], w.member)
        made_from = field_value(await answer(details), "Made from")
        assert made_from == f"Prompt enhancement · job `{enhancement.id}`"


async def test_keep_mine_starts_the_image_with_the_members_prompt(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        enhancement, choice = await enhance(w, "a red fox in the snow at dusk")
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Keep mine"], w.member)
        image: JobRecord = await started(w, click)
        image, _ = await finished(w, image)
        assert image.prompt == "a red fox in the snow at dusk"
        assert image.parent_job_id == enhancement.id
        assert w.sim.submissions[1]["steps"][0]["input"]["prompt"] == image.prompt
        assert await w.available() == 1000 - 1 - 13


async def test_the_choice_is_made_once_even_when_two_clicks_race(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, choice = await enhance(w)
        ids = buttons(choice)
        first, second = await asyncio.gather(
            w.fake.click(int(choice["id"]), ids["Use enhanced"], w.member),
            w.fake.click(int(choice["id"]), ids["Keep mine"], w.member),
        )
        await w.fake.wait_for(lambda: len(w.sim.submissions) == 2, what="one image submitted")
        await w.wait_idle()
        await w.fake.settle()
        jobs = await w.jobs()
        assert len(jobs) == 2 and await w.available() == 1000 - 1 - 13
        refused = [h for h in (first, second) if h.response_type == 4]
        [loser] = refused
        assert "You already chose" in (await loser.original())["content"]


async def test_cancel_after_the_enhancement_holds_nothing_for_the_image(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        enhancement, choice = await enhance(w)
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Cancel"], w.member)
        await click.response()
        await w.fake.settle()
        assert "nothing is held" in click.original_message["content"]
        assert [j.id for j in await w.jobs()] == [enhancement.id]
        assert await w.holds() == 1  # the enhancement's own, settled
        assert await w.available() == 999 and len(w.sim.submissions) == 1


async def test_enhance_is_refused_with_nothing_held_when_the_image_is_unaffordable(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(10)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a cat", "quality": "low", "enhance": True},
        )
        text = (await answer(h))["content"]
        assert h.ephemeral and "this needs 13 Buzz; you have 10" in text
        await w.fake.settle()
        assert await w.jobs() == [] and w.sim.submissions == []


async def test_imagine_with_an_image_enhances_then_edits_that_image(tmp_path):
    source = png(64, 64, (10, 120, 200))
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "make it night", "enhance": True},
            attachments={"image": ("day.png", source, "image/png")},
        )
        choice = await h.wait_for_followup(1, timeout=20)
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Keep mine"], w.member)
        image = await started(w, click)
        image, _ = await finished(w, image)
        assert image.operation == "editImage"
        [url] = w.sim.submissions[1]["steps"][0]["input"]["images"]
        _, sent = sent_bytes(w.sim, url)
        assert sent == source  # the stored source, carried from the enhancement to the edit


async def test_a_choice_made_before_discord_confirmed_the_choice_message_counts(tmp_path):
    """Discord shows the choice but its answer to the bot is slow: a quick member's click
    lands while the enhancement is still delivering, and starts the image all the same."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "a cat on a windowsill", "enhance": True},
        )
        slow = w.fake.hold_requests("POST", rf"/webhooks/\d+/{h.token}$", answer_only=True)
        choice = await h.wait_for_followup(1, timeout=20)
        [enhancement] = await w.jobs()
        assert enhancement.status.value == "delivering"
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Keep mine"], w.member)
        answered = await click.response()
        assert answered["type"] == 7, answered  # the choice message updated, not an error
        slow.set()
        image, _ = await finished(w, await started(w, click))
        assert image.parent_job_id == enhancement.id and image.prompt == "a cat on a windowsill"


async def test_the_chosen_image_above_the_threshold_is_confirmed_after_the_choice(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.set_guild(confirm_above=5)  # the enhancement (1) runs; the image (13) asks
        enhancement, choice = await enhance(w)
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Use enhanced"], w.member)
        asked = await click.wait_for_followup(1)
        assert "**13 Buzz**" in asked["content"] and len(await w.jobs()) == 1
        yes = await w.fake.click(int(asked["id"]), buttons(asked)["Confirm"], w.member)
        image, _ = await finished(w, await started(w, yes))
        assert image.parent_job_id == enhancement.id and image.prompt == ENHANCED


async def test_a_prompt_the_filter_holds_is_not_enhanced_first(tmp_path):
    """The filter holds prompts for the moderators before anything runs: such a prompt is not
    sent upstream to be enhanced (nor charged for that); it waits for review as written."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.bot.filters.add(w.guild, "volcano", w.moderator)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a volcano erupting", "quality": "low", "enhance": True},
        )
        job = await started(w, h)
        job = await w.wait_job(job.id, "held")
        assert (job.model, job.prompt) == ("gpt-image-2", "a volcano erupting")
        assert w.sim.submissions == []
        assert [j.model for j in await w.jobs()] == ["gpt-image-2"]  # no enhancement job


async def test_a_long_prompt_and_wordy_advice_still_fit_the_choice(tmp_path, monkeypatch):
    """A prompt at the option's maximum and an enhancement with several sentences of issues and
    recommendations (as an LLM writes them) would pass Discord's 6,000 characters per embed:
    the choice is shortened to fit, and still offered."""
    import bot.civitai.simulator.steps.prompt_enhancement as sim_enhance

    plain = sim_enhance.enhance

    def wordy(prompt: str, ecosystem: str, negative: str | None) -> dict[str, Any]:
        out = plain(prompt, ecosystem, negative)
        out["issues"] = [
            {"description": f"Issue {i}: " + "this is said at length. " * 8, "severity": "info"}
            for i in range(5)
        ]
        out["recommendations"] = [f"Advice {i}: " + "say more about it. " * 10 for i in range(5)]
        return out

    monkeypatch.setattr(sim_enhance, "enhance", wordy)
    prompt = ("a lighthouse on a rocky coast at dusk with waves " * 130)[:6000]
    async with world(tmp_path) as w:
        await w.grant(1000)
        enhancement, choice = await enhance(w, prompt)
        [embed] = choice["embeds"]
        size = len(embed.get("title", "")) + len(embed.get("description", ""))
        size += len(embed["footer"]["text"])
        size += sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
        assert size <= 6000
        assert set(buttons(choice)) == {"Use enhanced", "Keep mine", "Cancel"}
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Use enhanced"], w.member)
        image = await started(w, click)
        image, _ = await finished(w, image)
        # The shortened text is only what is shown: the image gets the whole enhanced prompt.
        assert image.prompt == (enhancement.output or {})["enhancedPrompt"]


async def test_a_choice_whose_image_never_started_can_be_made_again_after_a_restart(tmp_path):
    """The bot stops after the choice is recorded, before the image is admitted: the buttons
    are still there, and a click after the restart starts the image (the member does not pay
    for a second enhancement)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        enhancement, choice = await enhance(w)
        never = asyncio.Event()

        async def stops_here(*args: Any, **kwargs: Any) -> None:
            await never.wait()

        w.bot.flow.begin = stops_here  # type: ignore[method-assign]
        w.bot.answer_wait = 0  # it dies: what is under way is not waited for
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Use enhanced"], w.member)
        await click.response()
        await w.restart_bot()
        w.bot.answer_wait = 0  # the dead process's click is not this one's to wait for
        shown = w.fake.message(int(choice["id"]))
        assert set(buttons(shown)) == {"Use enhanced", "Keep mine", "Cancel"}
        again = await w.fake.click(int(choice["id"]), buttons(shown)["Keep mine"], w.member)
        image = await started(w, again)
        image, _ = await finished(w, image)
        assert image.parent_job_id == enhancement.id and image.prompt == enhancement.prompt
        assert await w.available() == 1000 - 1 - 13  # one enhancement, one image
        assert not buttons(w.fake.message(int(choice["id"])))  # taken off once it started


async def test_two_confirmations_after_two_choices_start_one_image(tmp_path):
    """Above the threshold the choice asks for a confirmation, and the choice buttons stay
    until the image is admitted: a second Use enhanced asks again. Confirming both (together)
    must still start one image from the one enhancement, charged once."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.set_guild(confirm_above=5)
        enhancement, choice = await enhance(w)
        use = buttons(choice)["Use enhanced"]
        first = await w.fake.click(int(choice["id"]), use, w.member)
        asked = [await first.wait_for_followup(1)]
        # Its handling over (the question's message noted): a click meanwhile is told the
        # choice is being made, which a loaded machine made this test meet now and then.
        await finish_interactions(10)
        second = await w.fake.click(int(choice["id"]), use, w.member)
        asked.append(await second.wait_for_followup(1))
        yes = await asyncio.gather(
            *(w.fake.click(int(a["id"]), buttons(a)["Confirm"], w.member) for a in asked)
        )
        told = await asyncio.gather(
            *(
                y.wait_for_original(
                    lambda m: "Started" in m["content"] or "Not started" in m["content"]
                )
                for y in yes
            )
        )
        refusals = [m["content"] for m in told if "Not started" in m["content"]]
        assert len(refusals) == 1 and "already started" in refusals[0], told
        [image] = [j for j in await w.jobs() if j.parent_job_id == enhancement.id]
        await finished(w, image)
        await w.fake.settle()
        assert len(await w.jobs()) == 2 and len(w.sim.submissions) == 2
        assert await w.available() == 1000 - 1 - 13


async def test_an_enhancement_that_returns_no_prompt_is_a_failure_with_its_charge_for_review(
    tmp_path, monkeypatch
):
    """The orchestrator answers the enhancement with an empty enhancedPrompt (the schema only
    requires the field): there is nothing to choose, so the member is told it failed, not
    offered "Use enhanced" on a blank prompt, and its charge goes before the moderators."""
    import bot.civitai.simulator.steps.prompt_enhancement as sim_enhance

    plain = sim_enhance.enhance

    def blank(prompt: str, ecosystem: str, negative: str | None) -> dict[str, Any]:
        return {**plain(prompt, ecosystem, negative), "enhancedPrompt": "  "}

    monkeypatch.setattr(sim_enhance, "enhance", blank)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a cat on a windowsill", "quality": "low", "enhance": True},
        )
        job = await w.only_job()
        job = await w.wait_job(job.id, "done", "failed")
        await w.wait_idle()
        await w.fake.settle()
        assert job.status.value == "failed" and job.charged == 1
        status = await h.original()
        text = text_of(status)
        assert (
            "Prompt enhancement failed; 1 Buzz charged" in text
            and "a moderator will look at the charge" in text
        )
        assert "image generation" not in text
        assert h.followups == []  # no choice on a blank prompt
        item = await w.services.moderation.item_for_job(job.id)
        assert item is not None and item.kind == "undelivered" and item.open


@pytest.mark.parametrize("kind", ["fail", "expire", "block"])
async def test_an_enhancement_that_ends_without_a_prompt_does_not_say_to_choose(tmp_path, kind):
    """The private status opened with "your image starts once you choose": an enhancement that
    failed, expired or was blocked offers no choice, so that line must not stay above the
    ending, leaving the member waiting for buttons that never come."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome(kind, step="promptEnhancement"))
        options = {"prompt": "a cat on a windowsill", "quality": "low", "enhance": True}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
        await h.wait_for_original(lambda m: "Enhancing your prompt" in m["content"])
        job = await w.wait_job((await w.only_job()).id, "failed", "expired", "blocked")
        await w.wait_idle()
        status = await h.wait_for_original(lambda m: "Enhancing" not in m["content"])
        assert "once you choose" not in status["content"]
        assert "no image was started" in status["content"]
        assert "run the command again" in status["content"]
        assert h.followups == [] and [j.id for j in await w.jobs()] == [job.id]


async def test_an_enhancement_whose_status_was_not_shown_still_tells_how_it_ended(
    tmp_path, monkeypatch
):
    """Discord refuses the edit that shows the enhancement's private status: the job runs all
    the same (it is admitted and held), so when it fails the member must still be told, not
    left with "thinking…" and no word."""
    from tests.fakes import errors as fake_errors
    from tests.fakes import rest as fake_rest

    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        if b"Enhancing your prompt" in await request.read():
            raise fake_errors.ApiError(400, 50035, "Invalid Form Body")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("fail", step="promptEnhancement"))
        options = {"prompt": "a cat on a windowsill", "quality": "low", "enhance": True}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
        job = await w.wait_job((await w.only_job()).id, "failed")
        told = await h.wait_for_followup(1)
        assert is_ephemeral(told) and "Prompt enhancement failed" in text_of(told)
        assert job.status_message_id is None
