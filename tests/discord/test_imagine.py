"""/imagine (the server's model; an image makes it an edit) and the "Edit image" message menu."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from tests.discord.harness import (
    answer,
    finish,
    image_size,
    jpeg,
    open_image,
    png,
    sent_bytes,
    started,
    text_of,
    world,
)


def pixels(data: bytes) -> bytes:
    return open_image(data).convert("RGB").tobytes()


async def test_imagine_without_an_image_creates_with_the_guild_default(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "imagine", options={"prompt": "a quiet harbour"}
        )
        job, result = await finish(w, h)
        [submitted] = w.sim.submissions
        assert submitted["steps"][0]["input"] == {
            "engine": "openai",
            "model": "gpt-image-2",
            "operation": "createImage",
            "prompt": "a quiet harbour",
            "width": 1024,
            "height": 1024,
            "quantity": 1,
            "quality": "high",
        }
        assert job.charged == 286 and await w.available() == 1000 - 286
        assert "gpt-image-2" in text_of(result)


async def test_imagine_with_an_image_edits_it(tmp_path):
    source = png(320, 256, (200, 10, 10))
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "paint it blue"},
            attachments={"image": ("red.png", source, "image/png")},
        )
        job, result = await finish(w, h)
        [submitted] = w.sim.submissions
        step = submitted["steps"][0]["input"]
        assert step["model"] == "gpt-image-2" and step["operation"] == "editImage"
        [url] = step["images"]
        assert pixels(sent_bytes(w.sim, url)[1]) == pixels(source)
        assert job.operation == "editImage"
        # Priced from the source's size (320x256 → the 1024x768 tier, high).
        assert job.charged == 195 and await w.available() == 1000 - 195
        [attachment] = result["attachments"]
        assert image_size(w.fake.attachment_bytes(attachment)) == (320, 256)


async def test_imagine_follows_the_default_model_an_admin_sets(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.set_guild(default_model="gpt-image-1")
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "imagine", options={"prompt": "a paper boat"}
        )
        job, _ = await finish(w, h)
        h2 = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "fold it"},
            attachments={"image": ("boat.jpg", jpeg(64, 64), "image/jpeg")},
        )
        job2, _ = await finish(w, h2)
        first, second = (s["steps"][0]["input"] for s in w.sim.submissions)
        assert (first["model"], first["operation"]) == ("gpt-image-1", "createImage")
        assert (second["model"], second["operation"]) == ("gpt-image-1", "editImage")
        assert job.model == job2.model == "gpt-image-1"
        assert job.charged == job2.charged == 300  # gpt-image-1, quality auto


async def test_edit_image_menu_asks_for_a_prompt_and_edits_that_image(tmp_path):
    source = png(128, 128, (0, 120, 0))
    async with world(tmp_path) as w:
        await w.grant(1000)
        posted = await w.fake.post_message(
            w.channel, w.other, "my drawing", [("drawing.png", source, "image/png")]
        )
        h = await w.fake.message_command(
            w.guild, w.channel, w.member, "Edit image", int(posted["id"])
        )
        await h.response()
        assert h.modal is not None and h.modal["title"] == "Edit image"
        submitted = await w.fake.submit_modal(h, {"prompt": "add a sun"})
        job, result = await finish(w, submitted)
        [sent] = w.sim.submissions
        step = sent["steps"][0]["input"]
        assert step["operation"] == "editImage" and step["prompt"] == "add a sun"
        [url] = step["images"]
        assert pixels(sent_bytes(w.sim, url)[1]) == pixels(source)
        assert job.member_id == w.member and job.charged == 195  # 128x128 → the 1024x768 tier
        assert result["attachments"]


async def test_edit_image_menu_with_two_images_asks_which(tmp_path):
    one, two = png(64, 64, (255, 0, 0)), png(64, 64, (0, 0, 255))
    async with world(tmp_path) as w:
        await w.grant(1000)
        posted = await w.fake.post_message(
            w.channel,
            w.other,
            "two",
            [("one.png", one, "image/png"), ("two.png", two, "image/png")],
        )
        h = await w.fake.message_command(
            w.guild, w.channel, w.member, "Edit image", int(posted["id"])
        )
        await h.response()
        inputs = [
            (row.get("components") or [row.get("component")])[0]["custom_id"]
            for row in h.modal["components"]
        ]
        assert inputs == ["prompt", "which"]
        submitted = await w.fake.submit_modal(h, {"prompt": "blur it", "which": "2"})
        job = await started(w, submitted)
        await w.wait_job(job.id, "done")
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        assert pixels(sent_bytes(w.sim, url)[1]) == pixels(two)


async def test_edit_image_menu_offers_every_image_of_a_message(tmp_path):
    """Discord allows ten attachments: the seventh can be chosen too."""
    images = [png(64, 64, (i * 30, 100, 200)) for i in range(1, 8)]
    async with world(tmp_path) as w:
        await w.grant(1000)
        posted = await w.fake.post_message(
            w.channel,
            w.other,
            "seven",
            [(f"p{i}.png", d, "image/png") for i, d in enumerate(images)],
        )
        h = await w.fake.message_command(
            w.guild, w.channel, w.member, "Edit image", int(posted["id"])
        )
        await h.response()
        labels = [
            (row.get("components") or [row.get("component")])[0].get("label")
            for row in h.modal["components"]
        ]
        assert labels[1] == "Which image? (1-7)"
        submitted = await w.fake.submit_modal(h, {"prompt": "blur it", "which": "7"})
        job = await started(w, submitted)
        await w.wait_job(job.id, "done")
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        assert pixels(sent_bytes(w.sim, url)[1]) == pixels(images[6])


@pytest.mark.parametrize("which", ["²", "①", "0", "x", "3"])
async def test_edit_image_menu_refuses_what_is_not_an_image_number(tmp_path, caplog, which):
    async with world(tmp_path) as w:
        await w.grant(1000)
        posted = await w.fake.post_message(
            w.channel,
            w.other,
            "two",
            [("a.png", png(64, 64), "image/png"), ("b.png", png(64, 64), "image/png")],
        )
        h = await w.fake.message_command(
            w.guild, w.channel, w.member, "Edit image", int(posted["id"])
        )
        await h.response()
        submitted = await w.fake.submit_modal(h, {"prompt": "blur it", "which": which})
        text = text_of(await answer(submitted))
        assert submitted.ephemeral
        assert text == "**image**: choose a number from 1 to 2. Nothing was charged."
        assert await w.jobs() == [] and await w.holds() == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_edit_image_menu_on_an_image_of_another_type_says_which_types_it_takes(
    tmp_path, caplog
):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 90, 200)).save(buffer, "BMP")
    async with world(tmp_path) as w:
        await w.grant(1000)
        posted = await w.fake.post_message(
            w.channel, w.other, "scan", [("scan.bmp", buffer.getvalue(), "image/bmp")]
        )
        h = await w.fake.message_command(
            w.guild, w.channel, w.member, "Edit image", int(posted["id"])
        )
        text = text_of(await answer(h))
        assert h.ephemeral and h.modal is None
        # Not "no image attached": the member can see one; say what it is and what is taken.
        assert text.startswith("**image**: scan.bmp is")
        assert "PNG, JPEG, WebP or GIF" in text and text.endswith("Nothing was charged.")
        assert await w.jobs() == [] and await w.holds() == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_edit_image_menu_takes_the_bots_own_large_result_not_a_members_upload(tmp_path):
    """Above the members' attachment cap: the bot's own posted result is edited (it posted
    it), a member's upload of the same size is refused naming the option."""
    async with world(tmp_path, media={"max_attachment_bytes": 10_000}) as w:
        await w.grant(2000)
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "a lantern"}
        )
        _job, result = await finish(w, h)
        [attachment] = result["attachments"]
        assert attachment["size"] > 10_000
        menu = await w.fake.message_command(
            w.guild, w.channel, w.member, "Edit image", int(result["id"])
        )
        await menu.response()
        await finish(w, await w.fake.submit_modal(menu, {"prompt": "at night"}))

        data = w.fake.attachment_bytes(attachment)
        posted = await w.fake.post_message(
            w.channel, w.other, "mine", [("big.png", data, "image/png")]
        )
        menu = await w.fake.message_command(
            w.guild, w.channel, w.member, "Edit image", int(posted["id"])
        )
        await menu.response()
        refused = await answer(await w.fake.submit_modal(menu, {"prompt": "at night"}))
        assert "**image**" in refused["content"] and "9.8 KB" in refused["content"]


async def test_imagine_with_an_image_on_a_model_that_cannot_edit_names_the_option(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.set_guild(default_model="dall-e-3")
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "paint it blue"},
            attachments={"image": ("red.png", png(64, 64, (200, 10, 10)), "image/png")},
        )
        text = text_of(await answer(h))
        assert h.ephemeral and text.startswith("**image**:"), text
        assert "dall-e-3" in text and "/edit gpt-image-2" in text and "Nothing was charged" in text
        assert await w.jobs() == [] and await w.available() == 1000
