"""The bot on the OpenAI lane (BOT_PROVIDER=openai), end to end: the real bot and cogs against
the fake Discord and the OpenAI simulator over loopback HTTP. The member uses the same commands
and sees the image forming on the status message before the result is posted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.openai_api.simulator import OpenAISimulator
from tests.discord.harness import (
    World,
    answer,
    buttons,
    field_value,
    finished,
    image_size,
    png,
    started,
    text_of,
    world,
)

pytestmark = pytest.mark.timeout(90)
SIM_KEY = "sk-sim-discord-0123456789"


@asynccontextmanager
async def openai_world(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[World, Any]]:
    sim = OpenAISimulator(api_key=SIM_KEY, speed=0.002, seed=4, max_image_side=320)
    await sim.start()
    try:
        openai = {"base_url": sim.base_url, "api_key": SIM_KEY, **overrides.pop("openai", {})}
        async with world(tmp_path, provider="openai", openai=openai, **overrides) as w:
            yield w, sim
    finally:
        await sim.stop()


def preview_edits(w: World, message_id: int) -> list[Any]:
    """The bot's edits of a message that uploaded a file (a preview)."""
    return [
        c
        for c in w.fake.calls
        if c.method == "PATCH" and c.path.endswith(f"/messages/{message_id}") and c.files
    ]


async def test_the_status_message_shows_partial_images_in_place_before_the_result(tmp_path):
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        gate = sim.hold_final_images()  # the image is still forming
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a red fox", "size": "1536x1024", "quality": "medium"},
        )
        job = await started(w, h)
        status_id = job.status_message_id
        assert status_id is not None

        def two_previews() -> list[Any]:
            edits = preview_edits(w, status_id)
            return edits if len(edits) >= 2 else []

        edits = await w.fake.wait_for(two_previews, timeout=20, what="two preview edits")
        assert not w.results()  # nothing posted yet: these are previews of a running job
        shown = w.fake.message(status_id)
        [attachment] = shown["attachments"]
        assert attachment["filename"] == f"preview-{job.id}.jpg"
        assert shown["embeds"][0]["image"]["url"].endswith(attachment["filename"])
        assert image_size(w.fake.attachment_bytes(attachment)) == (320, 213)
        assert all(e.files[0]["filename"] == attachment["filename"] for e in edits)
        assert "Cancel" in buttons(shown)
        # The member is never told about a service this lane does not use.
        said = [
            json.dumps(c.json)
            for c in w.fake.calls
            if c.json is not None
            and (
                c.path.endswith(f"/messages/{status_id}")
                or (isinstance(c.response, dict) and c.response.get("id") == str(status_id))
            )
        ]
        assert len(said) > 2 and not any("orchestrator" in text.lower() for text in said)

        gate.set()
        job, result = await finished(w, job)
        # Every preview edit came before the result was posted; then the preview came off.
        [post] = [
            c
            for c in w.fake.calls
            if c.method == "POST" and [f["filename"] for f in c.files] == [f"{job.id}-1.jpg"]
        ]
        calls = w.fake.calls
        assert max(calls.index(e) for e in preview_edits(w, status_id)) < calls.index(post)
        assert w.fake.message(status_id)["attachments"] == []
        # The result is posted as on the Civitai lane, charged the table price.
        assert job.charged == 65 and await w.available() == 1000 - 65
        assert field_value(result, "Buzz charged") == "65"
        assert set(buttons(result)) >= {"Re-roll", "Edit", "Details", "Delete"}
        assert [sim_req.fields["stream"] for sim_req in sim.received] == [True]

        click = await w.fake.click(int(result["id"]), buttons(result)["Details"], w.member)
        details = text_of(await answer(click))
        assert "charged 65" in details
        total = job.usage["total_tokens"] if job.usage else None
        assert total and f"{total:,} tokens" in details and "output 1,768" in details


async def test_a_blocked_prompt_goes_to_the_moderators_and_costs_nothing(tmp_path):
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        mod_channel = w.fake.add_channel(w.guild, "mods")
        await w.set_guild(mod_channel_id=mod_channel)
        sim.script("moderation_blocked")
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "imagine", options={"prompt": "something bad"}
        )
        job = await started(w, h)
        job = await w.wait_job(job.id, "blocked")
        assert job.charged == 0 and await w.available() == 1000
        item = await w.fake.wait_for(
            lambda: w.fake.channel_messages(mod_channel), what="the review item"
        )
        assert job.id in text_of(item[-1])
        assert "blocked" in field_value(w.status_message(job), "Status").lower()


async def test_gpt_image_1_mini_through_imagine_once_an_admin_makes_it_the_default(tmp_path):
    prices = {"gpt-image-1-mini": {"low": 5, "medium": 20, "high": 75, "auto": 20}}
    async with openai_world(tmp_path, openai={"prices": prices}) as (w, sim):
        await w.grant(1000)
        admin = await w.fake.slash(
            w.guild,
            w.channel,
            w.admin,
            "settings default-model",
            options={"model": "gpt-image-1-mini"},
        )
        assert "Default model (/imagine): gpt-image-1-mini" in text_of(await answer(admin))
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "imagine", options={"prompt": "a paper boat"}
        )
        job, _ = await finished(w, await started(w, h))
        h2 = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "fold it"},
            attachments={"image": ("boat.png", png(96, 64), "image/png")},
        )
        job2, result = await finished(w, await started(w, h2))
        first, second = sim.received
        assert (first.route, first.fields["model"]) == ("generations", "gpt-image-1-mini")
        assert (second.route, second.fields["model"]) == ("edits", "gpt-image-1-mini")
        assert [f.name for f in second.files] == ["image[]"]
        assert second.fields["size"] == "1536x1024"  # the source's shape
        assert job.charged == job2.charged == 75  # high, the default quality
        assert "gpt-image-1-mini" in text_of(result)


async def test_size_suggestions_show_this_lanes_prices(tmp_path):
    """An operator who set their own gpt-image-2 prices sees them in the size suggestions, as
    they will be held and charged (not the Civitai table's)."""
    prices = {"gpt-image-2": {"high": 100, "medium": 40, "low": 10}}
    async with openai_world(tmp_path, openai={"prices": prices}) as (w, _):
        offered = await w.fake.autocomplete(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "x", "quality": "medium", "quantity": 2},
            focused="size",
        )
        named = {c["value"]: c["name"] for c in offered}
        assert named["1024x1024"] == "square 1024x1024 (80 Buzz)"
        assert named["3840x2160"] == "4K 3840x2160 (80 Buzz)"
        typed = await w.fake.autocomplete(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "x", "size": "2048x1152"},
            focused="size",
        )
        assert typed[0] == {"name": "custom 2048x1152 (100 Buzz)", "value": "2048x1152"}


async def test_offers_for_lack_of_buzz_show_and_charge_this_lanes_prices(tmp_path):
    """A member refused for lack of Buzz is offered cheaper variants at the prices this lane
    holds and charges (the operator's), and a clicked offer is charged what its button said."""
    prices = {
        "gpt-image-2": {"high": 400, "medium": 90, "low": 20},
        "gpt-image-1.5": {"high": 500, "medium": 200, "low": 60},
        "gpt-image-1": {"high": 500, "auto": 450, "medium": 200, "low": 70},
        "dall-e-3": 300,
        "dall-e-2": 150,
    }
    async with openai_world(tmp_path, openai={"prices": prices}) as (w, _):
        await w.grant(100)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a lighthouse at night"},
        )
        message = await answer(h)
        assert "this needs 400 Buzz; you have 100" in message["content"]
        assert list(buttons(message)) == [
            "medium · 90 Buzz",
            "gpt-image-1 low · 70 Buzz",
            "gpt-image-1.5 low · 60 Buzz",
            "low · 20 Buzz",
        ]
        click = await w.fake.click(
            int(message["id"]), buttons(message)["medium · 90 Buzz"], w.member
        )
        job, _ = await finished(w, await started(w, click))
        assert job.charged == 90 and await w.available() == 10
