"""Nothing lost on a restart: a question the bot asked (a Confirm / Cancel before a costly job,
the offers after a refusal, a tool's or a prompt enhancement's Confirm) is answered after a
restart exactly as before it — the same job, the same charge — the first click wins, and one
left past its time is closed, its message saying so, with nothing charged."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.discord_adapter.question_sweep import sweep_once
from bot.store.db import utcnow
from tests.discord.harness import (
    answer,
    buttons,
    field_value,
    finished,
    is_ephemeral,
    job_of,
    started,
    text_of,
    world,
)
from tests.discord.test_confirm import ask
from tests.discord.test_offers import refused
from tests.discord.test_openai_lane import openai_world
from tests.discord.test_tools import derived, first_result
from tests.discord_admin.test_guilds import click_from

CONFIRM_EXPIRED = "This confirmation has expired; run the command again. Nothing was charged."


class Clock:
    """The services' clock, moved by the test (the questions expire by it)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


async def test_a_confirmation_is_answered_after_a_restart(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        await w.restart_bot()
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        await click.response()
        assert "Confirmed: 286 Buzz." in w.fake.message(int(question["id"]))["content"]
        status = await click.wait_for_followup()
        assert "286 Buzz" in field_value(status, "Buzz")
        job, _ = await finished(w, await job_of(w, int(status["id"])))
        assert job.charged == 286 and await w.available() == 1000 - 286
        assert len(await w.jobs()) == 1


async def test_a_cancel_after_a_restart_holds_nothing(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        await w.restart_bot()
        click = await w.fake.click(int(question["id"]), buttons(question)["Cancel"], w.member)
        await click.response()
        assert "Canceled. Nothing was charged." in w.fake.message(int(question["id"]))["content"]
        await w.fake.settle()
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000


async def test_after_a_restart_the_first_click_wins_and_the_second_is_told(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        await w.restart_bot()
        confirm = buttons(question)["Confirm"]
        first = await w.fake.click(int(question["id"]), confirm, w.member)
        second = await w.fake.click(int(question["id"]), confirm, w.member)
        status = await first.wait_for_followup()
        reply = text_of(await answer(second))
        assert second.ephemeral and "already" in reply and "Nothing was charged" not in reply
        await finished(w, await job_of(w, int(status["id"])))
        assert len(await w.jobs()) == 1 and await w.available() == 1000 - 286


async def test_an_offer_is_taken_after_a_restart(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(100)
        message = await refused(w)
        await w.restart_bot()
        label = "medium · 78 Buzz"
        click = await w.fake.click(int(message["id"]), buttons(message)[label], w.member)
        job, _ = await finished(w, await started(w, click))
        assert (job.model, job.options["quality"]) == ("gpt-image-2", "medium")
        assert job.charged == 78 and await w.available() == 100 - 78
        # The buttons are gone from the message: a press still in flight from the member's client.
        low = buttons(message)["low · 13 Buzz"].removeprefix("offer:")
        again = await click_from(
            w, w.guild, w.channel, w.member, int(message["id"]), f"offer:{low}"
        )
        assert "already took one of these offers" in text_of(await answer(again))
        assert len(await w.jobs()) == 1


async def test_an_upscale_confirmation_is_answered_after_a_restart(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        await w.set_guild(confirm_above=1)
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        asked = await click.wait_for_original(lambda m: "Go ahead?" in m["content"])
        await w.restart_bot()
        yes = await w.fake.click(int(asked["id"]), buttons(asked)["Confirm"], w.member)
        job, _ = await derived(w, await started(w, yes))
        assert job.model == "upscaler" and job.reply_to_message_id == int(result["id"])
        assert job.charged == 2 and await w.available() == 1000 - 13 - 2


async def test_a_prompt_enhancement_confirmation_is_answered_after_a_restart(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.set_guild(confirm_above=0)  # the enhancement (1 Buzz) asks first
        options = {"prompt": "a cat on a windowsill", "quality": "low", "enhance": True}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
        asked = await h.wait_for_original(lambda m: "Go ahead?" in m["content"])
        assert await w.jobs() == []
        await w.restart_bot()
        yes = await w.fake.click(int(asked["id"]), buttons(asked)["Confirm"], w.member)
        await yes.response()
        now = await w.wait_message(asked["id"], "Enhancing your prompt")
        assert is_ephemeral(now)
        [job] = await w.jobs()
        job = await w.wait_job(job.id, "done")
        assert job.model == "prompt-enhancement" and job.charged == 1
        assert await w.available() == 1000 - 1


async def test_a_question_left_past_its_time_across_a_restart_says_so_and_charges_nothing(
    tmp_path,
):
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.grant(1000)
        question = await ask(w)
        await w.fake.settle()
        clock.offset = timedelta(minutes=11)
        await w.restart_bot()  # the start sweeps what expired while it was down
        now = await w.wait_message(question["id"], CONFIRM_EXPIRED)
        assert now["content"] == CONFIRM_EXPIRED
        assert not buttons(now)
        confirm = buttons(question)["Confirm"]  # pressed in a client that had not updated yet
        click = await click_from(w, w.guild, w.channel, w.member, int(question["id"]), confirm)
        reply = text_of(await answer(click))
        assert click.ephemeral and "expired" in reply and "Nothing was charged" in reply
        await w.fake.settle()
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000


async def test_a_question_sent_as_a_follow_up_says_so_when_the_sweep_closes_it(tmp_path):
    """An offer above the threshold asks Confirm in a follow-up of its own (the offer's click
    answered first): left ten minutes, that follow-up, not the offer's message, says it
    expired, and its Confirm then starts nothing."""
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        await w.grant(100)
        await w.set_guild(confirm_above=50)
        message = await refused(w)
        click = await w.fake.click(
            int(message["id"]), buttons(message)["medium · 78 Buzz"], w.member
        )
        asked = await click.wait_for_followup(1)
        assert "**78 Buzz**" in asked["content"]
        clock.offset = timedelta(minutes=11)
        await sweep_once(w.bot)
        now = w.fake.message(int(asked["id"]))
        assert now["content"] == CONFIRM_EXPIRED and not buttons(now)
        assert "Trying medium · 78 Buzz" in w.fake.message(int(message["id"]))["content"]
        confirm = buttons(asked)["Confirm"]
        late = await click_from(w, w.guild, w.channel, w.member, int(asked["id"]), confirm)
        assert "expired" in text_of(await answer(late))
        await w.fake.settle()
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 100


async def test_a_confirmation_on_the_openai_lane_is_answered_after_a_restart(tmp_path):
    """The OpenAI lane's request (its wire fields, its price) is kept with the question too."""
    async with openai_world(tmp_path) as (w, _sim):
        await w.grant(1000)
        await w.set_guild(confirm_above=1)
        options = {"prompt": "a lighthouse", "quality": "low"}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
        question = await answer(h)
        price = int(re.search(r"\*\*(\d+) Buzz\*\*", text_of(question))[1])  # type: ignore[index]
        await w.restart_bot()
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        job, _ = await finished(w, await started(w, click))
        assert job.hold_amount == price and len(await w.jobs()) == 1
        assert await w.available() == 1000 - job.charged
