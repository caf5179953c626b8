"""Above the guild's threshold the member confirms the cost first (ephemeral Confirm / Cancel)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest

from tests.discord.harness import (
    answer,
    buttons,
    field_value,
    finished,
    is_ephemeral,
    job_of,
    png,
    text_of,
    world,
)
from tests.discord_admin.test_guilds import click_from
from tests.store.read_only import write_locked

OPTIONS = {"prompt": "a golden gate", "size": "1024x1024", "quality": "high"}  # 286 Buzz


def asked_state(tmp_path) -> str:
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as db:
        return db.execute("SELECT state FROM questions").fetchone()[0]


async def ask(w):
    await w.set_guild(confirm_above=200)
    h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=OPTIONS)
    question = await answer(h)
    assert h.ephemeral
    text = text_of(question)
    assert "286 Buzz" in text and "714" in text  # the cost and the balance after it
    assert set(buttons(question)) == {"Confirm", "Cancel"}
    assert await w.jobs() == [] and await w.holds() == 0
    return question


async def test_cancel_holds_nothing(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        click = await w.fake.click(int(question["id"]), buttons(question)["Cancel"], w.member)
        await click.response()
        now = w.fake.message(int(question["id"]))
        assert "Canceled. Nothing was charged." in now["content"] and not buttons(now)
        await w.fake.settle()
        assert await w.jobs() == [] and await w.holds() == 0
        assert await w.available() == 1000 and w.sim.submissions == []


async def test_confirm_runs_the_job_and_charges_it(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        await click.response()
        assert "Confirmed: 286 Buzz." in w.fake.message(int(question["id"]))["content"]
        status = await click.wait_for_followup()
        assert not is_ephemeral(status)
        assert "286 Buzz" in field_value(status, "Buzz")
        job = await job_of(w, int(status["id"]))
        job, result = await finished(w, job)
        assert job.charged == 286 and await w.available() == 1000 - 286
        await w.wait_status(job, "Done")  # the follow-up status message is kept up to date
        assert len(w.sim.submissions) == 1
        assert result["attachments"]


async def test_a_confirmation_the_bot_never_asked_is_refused_politely(tmp_path):
    """A Confirm naming no question the bot keeps (crafted, or forgotten a day after it
    closed) is told it expired, not 'something went wrong'; nothing is charged."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        unknown = "confirm:yes:" + "0" * 16
        click = await click_from(w, w.guild, w.channel, w.member, int(question["id"]), unknown)
        reply = await answer(click)
        assert click.ephemeral
        assert "expired" in reply["content"] and "Nothing was charged" in reply["content"]
        assert "Something went wrong" not in reply["content"]
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000


async def test_a_confirmation_past_its_time_is_refused_politely(tmp_path, monkeypatch):
    async with world(tmp_path) as w:
        monkeypatch.setattr(w.bot.flow.asked, "ttl", 0.0)
        await w.grant(1000)
        question = await ask(w)
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        reply = await answer(click)
        assert click.ephemeral and "expired" in reply["content"]
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000


async def test_a_balance_spent_before_the_confirmation_is_refused_privately(tmp_path):
    """Between the question and the click the member spent their Buzz elsewhere: the click
    is refused, privately, and the channel never sees the request."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        await w.take(900)
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        await click.response()
        now = await w.wait_message(question["id"], "nothing was charged")
        assert is_ephemeral(now) and "286" in now["content"]
        await w.fake.settle()
        assert click.followups == []
        bot = str(w.fake.bot_user_id)
        assert not [m for m in w.channel_messages() if m["author"]["id"] == bot]
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 100


async def test_with_whatif_on_the_member_confirms_the_orchestrators_price(tmp_path):
    """The orchestrator prices this above the local table (a surcharge): the member is asked
    to confirm that price, it is what is held and charged, and it is asked for once."""
    async with world(tmp_path, civitai={"whatif": True}) as w:
        w.sim.surcharge = 14  # 286 → 300
        await w.grant(1000)
        await w.set_guild(confirm_above=290)  # only the orchestrator's price is above it
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=OPTIONS)
        question = await answer(h)
        text = text_of(question)
        assert "300 Buzz" in text and "700" in text, text
        assert await w.jobs() == [] and await w.holds() == 0
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        await click.response()
        status = await click.wait_for_followup()
        job = await job_of(w, int(status["id"]))
        assert job.whatif == 300 and job.hold_amount == 300
        job, _ = await finished(w, job)
        assert job.charged == 300 and await w.available() == 700
        assert w.services.client.stats["whatif"] + w.services.client.stats["submit"] == 2


@pytest.mark.parametrize(
    "change, refusal",
    [
        ({"default_model": "gpt-image-1.5"}, "gpt-image-2 is switched off on this server"),
        ({}, "image commands are not allowed in this channel"),
    ],
)
async def test_a_rule_an_admin_changed_before_the_confirmation_is_applied(
    tmp_path, change, refusal
):
    """Between the question and the click (up to ten minutes) an admin switched the model off
    or refused the channel: the click is refused as a new request would be, nothing is held."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        if change:
            await w.set_guild(**change)
            await w.services.guilds.set_model(w.guild, "gpt-image-2", False, actor_id=w.admin)
        else:
            await w.services.guilds.set_channel(w.guild, w.channel, False, actor_id=w.admin)
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        await click.response()
        now = await w.wait_message(question["id"], refusal)
        assert is_ephemeral(now)
        await w.fake.settle()
        bot = str(w.fake.bot_user_id)
        assert not [m for m in w.channel_messages() if m["author"]["id"] == bot]
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000
        assert w.sim.submissions == []


async def test_an_edit_priced_higher_by_the_orchestrator_once_its_images_are_in_asks_again(
    tmp_path,
):
    """With whatif on, an edit's question quotes the local price (its images are only described
    then); the orchestrator, sent the images, prices it higher. The member is asked again for
    that price before anything is held, and what they confirm is what is held."""
    async with world(tmp_path, civitai={"whatif": True}) as w:
        w.sim.surcharge = 14  # 52 → 66
        await w.grant(1000)
        await w.set_guild(confirm_above=50)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "add a moon", "quality": "medium"},
            attachments={"image": ("first.png", png(96, 64), "image/png")},
        )
        question = await answer(h)
        assert "52 Buzz" in text_of(question)
        # Described only so far (no bytes yet): nothing is sent upstream to be priced.
        assert w.services.client.stats["whatif"] == 0 and w.services.client.stats["upload"] == 0
        click = await w.fake.click(int(question["id"]), buttons(question)["Confirm"], w.member)
        await click.response()
        again = await w.fake.wait_for(
            lambda: (
                (m := w.fake.message(int(question["id"])))
                and "66 Buzz" in m["content"]
                and buttons(m)
                and m
            ),
            what="the question asked again with the orchestrator's price",
        )
        assert is_ephemeral(again) and "934" in again["content"]  # the balance after it
        assert set(buttons(again)) == {"Confirm", "Cancel"}
        await w.fake.settle()
        assert await w.jobs() == [] and await w.holds() == 0 and click.followups == []
        second = await w.fake.click(int(again["id"]), buttons(again)["Confirm"], w.member)
        await second.response()
        status = await second.wait_for_followup()
        job = await job_of(w, int(status["id"]))
        assert job.hold_amount == 66
        job, _ = await finished(w, job)
        assert job.charged == 66 and await w.available() == 1000 - 66


async def test_a_double_click_on_confirm_starts_one_job_and_says_so(tmp_path):
    """Two clicks on Confirm arrive together: one job, one hold; the second click is told it
    was already answered, not that the confirmation expired with 'nothing was charged' (the
    member would run the command again and pay twice)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        confirm = buttons(question)["Confirm"]
        first = await w.fake.click(int(question["id"]), confirm, w.member)
        second = await w.fake.click(int(question["id"]), confirm, w.member)
        status = await first.wait_for_followup()
        job = await job_of(w, int(status["id"]))
        reply = await answer(second)
        assert second.ephemeral
        assert "already" in reply["content"], reply["content"]
        assert "Nothing was charged" not in reply["content"], reply["content"]
        await finished(w, job)
        assert len(await w.jobs()) == 1 and await w.available() == 1000 - 286


async def test_a_confirm_discord_forgot_while_the_database_was_busy_can_be_clicked_again(
    tmp_path,
):
    """The database is busy (another writer) when the member clicks Confirm: the bot's answer
    comes after Discord's deadline, so the member sees "This interaction failed". Their next
    click runs the job, instead of being told it was already answered (with no answer shown
    and nothing started)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        question = await ask(w)
        confirm = buttons(question)["Confirm"]
        w.fake.ack_deadline = 0.5
        with write_locked(tmp_path / "bot.sqlite3"):
            first = await w.fake.click(int(question["id"]), confirm, w.member)
            await asyncio.sleep(1.5)  # past the deadline while the claim waits
        # The bot learns Discord forgot the click when its late answer is refused.
        await w.fake.wait_for(lambda: first.record.rejections, what="the late answer refused")
        await w.fake.wait_for(
            lambda: asked_state(tmp_path) == "open", what="the question open again"
        )
        assert await w.jobs() == [] and await w.holds() == 0

        w.fake.ack_deadline = 3.0
        again = await w.fake.click(int(question["id"]), confirm, w.member)
        said = await answer(again)
        assert "already" not in said["content"], said["content"]
        status = await again.wait_for_followup()
        job = await job_of(w, int(status["id"]))
        job, _ = await finished(w, job)
        assert job.charged == 286 and await w.available() == 1000 - 286
