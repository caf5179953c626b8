"""Refusals: an ephemeral answer that names the option and what is allowed, and NOTHING held —
no job, no hold, the balance as it was, nothing sent to the orchestrator."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.discord.harness import World, answer, noise_png, png, status_post, text_of, world

GRANT = 1000


async def refused(w: World, handle, balance: int = GRANT) -> str:
    message = await answer(handle)
    assert handle.ephemeral, message
    assert await w.jobs() == []
    assert await w.holds() == 0
    assert await w.available() == balance
    assert w.sim.submissions == []
    # The public channel shows nothing of it.
    assert not [m for m in w.channel_messages() if m["author"]["id"] == str(w.fake.bot_user_id)]
    return text_of(message)


async def refused_after_download(w: World, handle) -> str:
    """A problem found only in the downloaded file: the answer is private (it replaces the
    private "thinking…"), nothing public was ever posted, and nothing was held."""
    first = await handle.response()
    assert first["type"] == 5 and handle.ephemeral  # a private "thinking…", nothing public
    reply = await handle.wait_for_original(lambda m: "Nothing was charged" in m["content"])
    await w.fake.settle()
    assert handle.followups == []
    assert not [m for m in w.channel_messages() if m["author"]["id"] == str(w.fake.bot_user_id)]
    assert await w.jobs() == [] and await w.holds() == 0
    assert await w.available() == GRANT and w.sim.submissions == []
    return reply["content"]


async def test_gpt_image_2_size_not_a_multiple_of_16_suggests_the_nearest(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a film still", "size": "1920x1080"},
        )
        text = await refused(w, h)
        assert "**size**" in text
        assert "multiple of 16" in text and "1920x1080" in text
        # The nearest valid sizes, with what each would cost (high, one image).
        assert "1920x1072 (208 Buzz)" in text and "1920x1088 (299 Buzz)" in text


async def test_prompt_too_long_for_dall_e_2_through_imagine(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        await w.set_guild(default_model="dall-e-2")
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "imagine", options={"prompt": "a" * 1500}
        )
        text = await refused(w, h)
        assert "**prompt**" in text
        assert "1,500" in text and "1,000" in text and "dall-e-2" in text


async def test_mask_with_gpt_image_1_5_through_imagine(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        await w.set_guild(default_model="gpt-image-1.5")
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "change the sky"},
            attachments={
                "image": ("photo.png", png(64, 64), "image/png"),
                "mask": ("mask.png", png(64, 64, (255, 255, 255)), "image/png"),
            },
        )
        text = await refused(w, h)
        assert "**mask**" in text
        assert "gpt-image-1.5" in text and "gpt-image-2" in text and "gpt-image-1" in text


async def test_a_text_file_is_not_an_image(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it pop"},
            attachments={"image": ("notes.txt", b"not a picture at all", "text/plain")},
        )
        text = await refused(w, h)
        assert "**image**" in text
        assert "PNG, JPEG, WebP or GIF" in text and "notes.txt" in text


async def test_a_text_file_without_a_content_type_is_refused_by_its_extension(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "make it pop"},
            attachments={"image": ("notes.txt", b"not a picture at all")},
        )
        text = await refused(w, h)
        assert "**image**" in text and "PNG, JPEG, WebP or GIF" in text


async def test_an_attachment_over_the_byte_cap(tmp_path):
    big = noise_png(80, 80)  # ~19 KB
    async with world(tmp_path, media={"max_attachment_bytes": 10_000}) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-1",
            options={"prompt": "sharpen"},
            attachments={"image": ("big.png", big, "image/png")},
        )
        text = await refused(w, h)
        assert "**image**" in text
        assert f"{len(big) / 1024:.1f} KB" in text and "9.8 KB" in text


async def test_not_enough_buzz_says_the_numbers(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(100)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a mountain", "size": "1024x1024", "quality": "high"},
        )
        text = await refused(w, h, balance=100)
        assert "286" in text and "100" in text


async def test_size_autocomplete_offers_presets_with_prices_and_a_typed_size(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        presets = await w.fake.autocomplete(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "x"},
            focused="size",
        )
        named = {c["value"]: c["name"] for c in presets}
        assert named["1024x1024"] == "square 1024x1024 (286 Buzz)"
        assert named["1920x1072"] == "1080p 1920x1072 (208 Buzz)"
        assert named["3840x2160"] == "4K 3840x2160 (533 Buzz)"
        assert "1920x1080" not in named

        # The price follows the quality already chosen.
        medium = await w.fake.autocomplete(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "x", "quality": "medium", "quantity": 2},
            focused="size",
        )
        assert {c["value"]: c["name"] for c in medium}["3840x2160"] == "4K 3840x2160 (286 Buzz)"

        typed = await w.fake.autocomplete(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "x", "size": "1280x720"},
            focused="size",
        )
        assert typed[0] == {"name": "custom 1280x720 (221 Buzz)", "value": "1280x720"}

        # ...and the typed size is accepted as it is.
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "wide", "size": "1280x720"},
        )
        await status_post(h)
        job = await w.only_job()
        await w.wait_job(job.id, "done")
        step = w.sim.submissions[0]["steps"][0]["input"]
        assert (step["width"], step["height"]) == (1280, 720)
        assert await w.available() == GRANT - 221


@pytest.mark.parametrize(
    ("command", "data"),
    [
        ("edit gpt-image-1", b"\x89PNG\r\n\x1a\n" + b"\0" * 200),  # a signature, then nothing
        ("edit gpt-image-2", b""),  # an empty file
        ("imagine", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),  # an SVG renamed .png
        ("imagine", b"hello, this is text"),
    ],
)
async def test_a_file_discord_cannot_read_as_an_image_is_refused_at_once(tmp_path, command, data):
    """Discord reports no dimensions for it: refused before anything, naming the option —
    never with advice about a size option /imagine does not have."""
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            command,
            options={"prompt": "restore it"},
            attachments={"image": ("photo.png", data, "image/png")},
        )
        text = await refused(w, h)
        assert text.startswith("**image**: image is not a readable PNG, JPEG, WebP or GIF")
        assert "size" not in text


async def test_a_damaged_image_found_after_download_is_refused_privately(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        whole = noise_png(64, 64)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-1",
            options={"prompt": "restore it"},
            # Its header says 64x64 (what Discord reads); the pixels are cut off.
            attachments={"image": ("broken.png", whole[: len(whole) // 2], "image/png")},
        )
        text = await refused_after_download(w, h)
        assert text.startswith("**image**: image is not a PNG, JPEG, WebP or GIF")
        assert text.endswith("damaged). Nothing was charged.")


async def test_a_mask_of_another_shape_is_refused_after_download(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-1",
            options={"prompt": "restore it"},
            attachments={
                "image": ("photo.png", png(64, 64), "image/png"),
                "mask": ("mask.png", png(64, 32, (255, 255, 255)), "image/png"),
            },
        )
        text = await refused_after_download(w, h)
        assert text.startswith("**mask**: the mask is 64x32 but the image is 64x64")
        assert text.endswith("as the image. Nothing was charged.")


async def test_imagine_with_a_mask_but_no_image(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "imagine",
            options={"prompt": "a door"},
            attachments={"mask": ("mask.png", png(64, 64, (255, 255, 255)), "image/png")},
        )
        text = await refused(w, h)
        assert "**mask**" in text and "needs an image" in text


async def test_a_non_square_image_for_dall_e_2_is_refused_before_anything_is_posted(tmp_path):
    """Discord tells us the size up front, so the member hears it at once, privately."""
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit dall-e-2",
            options={"prompt": "a hat"},
            attachments={"image": ("wide.png", png(120, 80), "image/png")},
        )
        text = await refused(w, h)
        assert "**image**" in text and "square" in text and "120x80" in text


@pytest.mark.parametrize("prompt", ["\u200b\u200b", "\u2800\u2800", "\u3164", " \u200d "])
async def test_a_prompt_of_invisible_characters_is_refused_before_anything_is_held(
    tmp_path, prompt
):
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": prompt}
        )
        text = await refused(w, h)
        assert text.startswith("Not started, nothing was charged:")
        assert "**prompt**" in text and "no visible text" in text


def many_scans_jpeg(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG whose last scan is repeated `scans` times: a few bytes each, yet the
    decoder goes over every pixel once per scan (6000x6000 with 1,000 takes ~30 s of CPU)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 130, 140)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * scans + data[end:]


async def test_a_jpeg_of_thousands_of_scans_is_refused_before_it_is_decoded(tmp_path):
    """Minutes of decoding would hold up every member's image work (and result posts)."""
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "restore it"},
            attachments={"image": ("slow.jpg", many_scans_jpeg(64, 64, 5000), "image/jpeg")},
        )
        text = await refused_after_download(w, h)
        assert text.startswith("**image**: image is a JPEG of more than 100 scans"), text
        assert text.endswith("as a PNG. Nothing was charged.")


async def test_a_members_second_edit_while_the_first_is_downloading_downloads_nothing(tmp_path):
    """Sources are fetched before admission counts the member's jobs: a burst of /edit
    commands would otherwise hold every one of their files in memory at once."""
    async with world(tmp_path) as w:
        await w.grant(GRANT)
        await w.set_guild(per_member_concurrency=1)
        gate = w.fake.hold_requests("GET", r"/first\.png$")  # Discord's CDN, slow for it
        first = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it autumn", "quality": "low"},
            attachments={"image": ("first.png", png(64, 64), "image/png")},
        )
        await w.fake.wait_for(
            lambda: any(c.path.endswith("/first.png") for c in w.fake.calls),
            what="the first edit's download",
        )
        second = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it winter", "quality": "low"},
            attachments={"image": ("second.png", png(64, 64), "image/png")},
        )
        text = text_of(await second.wait_for_original(lambda m: "charged" in m["content"]))
        assert second.ephemeral and text.startswith("Not started, nothing was charged:"), text
        assert "still being checked" in text and "1 at a time" in text
        assert not [c for c in w.fake.calls if c.path.endswith("/second.png")]
        assert await w.jobs() == [] and await w.holds() == 0

        gate.set()
        job = await w.wait_job((await status_post(first) and await w.only_job()).id, "done")
        assert job.options["prompt"] == "make it autumn"
