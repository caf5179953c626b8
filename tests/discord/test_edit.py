"""/edit <model>: sources arrive as data URLs of the attached images, masks as the model wants
them, and what is posted and charged."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from tests.discord.harness import (
    field_value,
    finish,
    image_format,
    image_size,
    jpeg,
    open_image,
    png,
    sent_bytes,
    world,
)


def pixels(data: bytes) -> bytes:
    return open_image(data).convert("RGB").tobytes()


def gradient_png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height))
    image.putdata([(x % 256, y % 256, (x + y) % 256) for y in range(height) for x in range(width)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_mask(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    """A mask drawn without alpha: white (change) on black (keep)."""
    image = Image.new("RGB", (width, height), (0, 0, 0))
    ImageDraw.Draw(image).rectangle(box, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def transparent_mask(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    ImageDraw.Draw(image).rectangle(box, fill=(0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def alpha_zero_exactly_in(mask: bytes, box: tuple[int, int, int, int]) -> None:
    image = open_image(mask)
    assert image.mode == "RGBA"
    alpha = image.getchannel("A")
    x0, y0, x1, y1 = box
    for y in range(image.height):
        for x in range(image.width):
            inside = x0 <= x <= x1 and y0 <= y <= y1
            assert alpha.getpixel((x, y)) == (0 if inside else 255), (x, y)


def steps_without_sources(step: dict) -> dict:
    return {k: v for k, v in step.items() if k not in ("images", "image", "mask", "maskImage")}


async def test_edit_gpt_image_2_two_sources_and_a_drawn_mask(tmp_path):
    first, second = gradient_png(96, 64), jpeg(80, 80)
    box = (10, 20, 49, 39)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "add a moon", "quality": "medium"},
            attachments={
                "image": ("first.png", first, "image/png"),
                "image2": ("second.jpg", second, "image/jpeg"),
                "mask": ("mask.png", drawn_mask(96, 64, box), "image/png"),
            },
        )
        job, result = await finish(w, h)

        [submitted] = w.sim.submissions
        step = submitted["steps"][0]["input"]
        assert steps_without_sources(step) == {
            "engine": "openai",
            "model": "gpt-image-2",
            "operation": "editImage",
            "prompt": "add a moon",
            "quantity": 1,
            "quality": "medium",
        }
        assert "mask" not in step and "image" not in step
        [(mime1, sent1), (_mime2, sent2)] = [sent_bytes(w.sim, u) for u in step["images"]]
        assert mime1 == "image/png"  # a masked image stays PNG, like its mask
        assert pixels(sent1) == pixels(first)
        assert pixels(sent2) == pixels(second)
        mime, mask = sent_bytes(w.sim, step["maskImage"])
        assert mime == "image/png" and image_size(mask) == (96, 64)
        alpha_zero_exactly_in(mask, box)

        # No size: priced (and made) at the first source's size, 96x64 → the smallest tier.
        assert job.charged == 52
        assert await w.available() == 1000 - 52
        [attachment] = result["attachments"]
        assert image_size(w.fake.attachment_bytes(attachment)) == (96, 64)
        assert field_value(result, "Buzz charged") == "52"


async def test_edit_gpt_image_1_5_sources_fidelity_and_options(tmp_path):
    first, second = png(64, 64, (10, 200, 30)), jpeg(48, 32)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-1-5",
            options={
                "prompt": "make it autumn",
                "size": "1536x1024",
                "quality": "low",
                "quantity": 2,
                "background": "opaque",
                "fidelity": "low",
                "format": "jpeg",
            },
            attachments={
                "image": ("a.png", first, "image/png"),
                "image2": ("b.jpg", second, "image/jpeg"),
            },
        )
        job, result = await finish(w, h)

        [submitted] = w.sim.submissions
        step = submitted["steps"][0]["input"]
        assert steps_without_sources(step) == {
            "engine": "openai",
            "model": "gpt-image-1.5",
            "operation": "editImage",
            "prompt": "make it autumn",
            "size": "1536x1024",
            "quantity": 2,
            "quality": "low",
            "background": "opaque",
            "inputFidelity": "low",
            "outputFormat": "jpeg",
        }
        assert [pixels(sent_bytes(w.sim, u)[1]) for u in step["images"]] == [
            pixels(first),
            pixels(second),
        ]
        assert len(result["attachments"]) == 2
        for attachment in result["attachments"]:
            data = w.fake.attachment_bytes(attachment)
            assert image_format(data) == "JPEG" and image_size(data) == (1536, 1024)
        assert job.charged == 50
        assert await w.available() == 1000 - 50


async def test_edit_gpt_image_1_with_a_transparent_mask_sends_mask(tmp_path):
    source = gradient_png(64, 96)
    box = (0, 0, 31, 47)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-1",
            options={"prompt": "a hat", "size": "1024x1536", "quality": "medium"},
            attachments={
                "image": ("photo.png", source, "image/png"),
                "mask": ("mask.png", transparent_mask(64, 96, box), "image/png"),
            },
        )
        job, result = await finish(w, h)

        [submitted] = w.sim.submissions
        step = submitted["steps"][0]["input"]
        assert steps_without_sources(step) == {
            "engine": "openai",
            "model": "gpt-image-1",
            "operation": "editImage",
            "prompt": "a hat",
            "size": "1024x1536",
            "quantity": 1,
            "quality": "medium",
            "background": "opaque",
        }
        assert "maskImage" not in step
        [sent] = [sent_bytes(w.sim, u) for u in step["images"]]
        assert sent[0] == "image/png" and pixels(sent[1]) == pixels(source)
        mime, mask = sent_bytes(w.sim, step["mask"])
        assert mime == "image/png"
        alpha_zero_exactly_in(mask, box)
        [attachment] = result["attachments"]
        assert image_size(w.fake.attachment_bytes(attachment)) == (1024, 1536)
        assert job.charged == 100
        assert await w.available() == 1000 - 100


async def test_edit_dall_e_2_sends_one_image_and_a_mask(tmp_path):
    source = gradient_png(64, 64)
    box = (16, 16, 47, 47)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit dall-e-2",
            options={"prompt": "a window", "size": "512x512", "quantity": 1, "format": "png"},
            attachments={
                "image": ("square.png", source, "image/png"),
                "mask": ("mask.png", drawn_mask(64, 64, box), "image/png"),
            },
        )
        job, result = await finish(w, h)

        [submitted] = w.sim.submissions
        step = submitted["steps"][0]["input"]
        assert steps_without_sources(step) == {
            "engine": "openai",
            "model": "dall-e-2",
            "operation": "editImage",
            "prompt": "a window",
            "size": "512x512",
            "quantity": 1,
            "outputFormat": "png",
        }
        assert "images" not in step and "maskImage" not in step
        mime, image = sent_bytes(w.sim, step["image"])
        assert mime == "image/png" and open_image(image).mode == "RGBA"
        assert pixels(image) == pixels(source)
        mime, mask = sent_bytes(w.sim, step["mask"])
        assert mime == "image/png"
        alpha_zero_exactly_in(mask, box)
        [attachment] = result["attachments"]
        data = w.fake.attachment_bytes(attachment)
        assert image_format(data) == "PNG" and image_size(data) == (512, 512)
        assert job.charged == 300
        assert await w.available() == 1000 - 300
