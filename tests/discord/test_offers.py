"""A refusal for lack of Buzz (or of the guild's budget) offers, privately, cheaper variants the
member can afford right now — buttons labelled with their price — and a click starts one
through the normal admission, charged its price. Nothing is held until then."""

from __future__ import annotations

import logging

from tests.discord.harness import answer, buttons, finished, started, text_of, world
from tests.discord_admin.test_guilds import click_from


async def refused(w, **options):
    options = {"prompt": "a lighthouse at night", **options}
    h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
    message = await answer(h)
    assert h.ephemeral and "Not started, nothing was charged" in message["content"]
    await w.fake.settle()
    assert await w.jobs() == [] and await w.holds() == 0 and w.sim.submissions == []
    return message


async def test_a_clicked_offer_starts_and_is_charged_its_price(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(100)
        message = await refused(w)  # high 1024x1024: 286
        assert "this needs 286 Buzz; you have 100" in message["content"]
        assert "afford right now instead" in message["content"]
        assert list(buttons(message)) == [
            "gpt-image-1.5 medium · 100 Buzz",
            "gpt-image-1 medium · 100 Buzz",
            "medium · 78 Buzz",
            "low · 13 Buzz",
        ]
        click = await w.fake.click(
            int(message["id"]), buttons(message)["medium · 78 Buzz"], w.member
        )
        job = await started(w, click)
        job, _ = await finished(w, job)
        assert (job.model, job.options["quality"], job.prompt) == (
            "gpt-image-2",
            "medium",
            "a lighthouse at night",
        )
        assert job.charged == 78 and await w.available() == 100 - 78


async def test_an_offer_of_another_model(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(100)
        message = await refused(w)
        label = "gpt-image-1.5 medium · 100 Buzz"
        click = await w.fake.click(int(message["id"]), buttons(message)[label], w.member)
        job, _ = await finished(w, await started(w, click))
        assert job.model == "gpt-image-1.5" and job.charged == 100 and await w.available() == 0


async def test_no_offers_with_nothing_to_spend(tmp_path):
    async with world(tmp_path) as w:
        message = await refused(w)
        assert buttons(message) == {} and "instead" not in message["content"]


async def test_offers_stay_within_the_guilds_budget(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.set_guild(budget_amount=30, budget_period="daily")
        message = await refused(w)
        assert "budget" in message["content"]
        assert list(buttons(message)) == [
            "gpt-image-1.5 low · 25 Buzz",
            "gpt-image-1 low · 25 Buzz",
            "low · 13 Buzz",
        ]


async def test_an_offer_is_checked_again_when_taken(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(100)
        message = await refused(w)
        await w.take(50)  # spent elsewhere meanwhile
        click = await w.fake.click(
            int(message["id"]), buttons(message)["medium · 78 Buzz"], w.member
        )
        await click.response()
        reply = await click.wait_for_followup(1)
        assert "this needs 78 Buzz; you have 50" in reply["content"]
        assert await w.jobs() == [] and await w.holds() == 0
        # Offered again, within the new balance.
        assert "low · 13 Buzz" in buttons(reply)


async def test_an_offer_above_the_threshold_is_confirmed_first(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(100)
        await w.set_guild(confirm_above=50)
        message = await refused(w)
        click = await w.fake.click(
            int(message["id"]), buttons(message)["medium · 78 Buzz"], w.member
        )
        asked = await click.wait_for_followup(1)
        assert "**78 Buzz**" in asked["content"] and await w.holds() == 0
        yes = await w.fake.click(int(asked["id"]), buttons(asked)["Confirm"], w.member)
        job, _ = await finished(w, await started(w, yes))
        assert job.charged == 78 and await w.available() == 22


async def test_a_crafted_offer_number_is_refused_and_the_real_offers_stay(tmp_path, caplog):
    """A button naming an offer that was never made (offer:TOKEN-9 of four) is a clear
    private line, not 'something went wrong'; the offers really made can still be taken."""
    async with world(tmp_path) as w:
        await w.grant(100)
        message = await refused(w)
        real = buttons(message)["low · 13 Buzz"]
        token = real.rsplit("-", 1)[0]
        crafted = await click_from(
            w, w.guild, w.channel, w.member, int(message["id"]), f"{token}-9"
        )
        text = text_of(await answer(crafted))
        assert crafted.ephemeral and "no such offer" in text and "went wrong" not in text
        assert await w.jobs() == [] and await w.holds() == 0
        job, _ = await finished(
            w, await started(w, await w.fake.click(int(message["id"]), real, w.member))
        )
        assert job.charged == 13 and await w.available() == 100 - 13
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
