"""/edit sources as the orchestrator gets them: an attachment that already fits is sent byte
for byte (uploaded once, named by URL); one over the byte budget is re-encoded under it."""

from __future__ import annotations

import io
import os
import struct

import pytest
from PIL import Image, ImageCms, ImageStat

from tests.discord.harness import finish, image_size, sent_bytes, world


def photo_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    noise = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    noise.save(buffer, "JPEG", quality=93)
    return buffer.getvalue()


async def test_an_attachment_that_fits_is_sent_exactly_as_attached(tmp_path):
    attached = photo_jpeg(400, 300)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it autumn", "quality": "low"},
            attachments={"image": ("leaves.jpg", attached, "image/jpeg")},
        )
        job, result = await finish(w, h)
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        assert not url.startswith("data:")  # uploaded, named by URL
        assert sent_bytes(w.sim, url) == ("image/jpeg", attached)
        assert len(w.sim.uploads) == 1
        assert job.charged == 13 and result["attachments"]


async def test_an_attachment_over_the_budget_is_re_encoded_under_it(tmp_path):
    attached = photo_jpeg(800, 600)
    budget = len(attached) // 2
    async with world(tmp_path, media={"max_source_bytes": budget}) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it autumn", "quality": "low"},
            attachments={"image": ("leaves.jpg", attached, "image/jpeg")},
        )
        await finish(w, h)
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        mime, sent = sent_bytes(w.sim, url)
        assert mime == "image/jpeg" and len(sent) <= budget
        assert image_size(sent)[0] <= 800


XYZ = tuple[float, float, float]
# sRGB's primaries (adapted to D50, as an ICC profile stores them).
SRGB_RED: XYZ = (0.4361, 0.2225, 0.0139)
SRGB_GREEN: XYZ = (0.3851, 0.7169, 0.0971)
SRGB_BLUE: XYZ = (0.1431, 0.0606, 0.7141)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def rgb_profile(red: XYZ, green: XYZ, blue: XYZ) -> bytes:
    """A minimal ICC v2 matrix profile (gamma 2.2) with the given primaries (D50)."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233)
    desc = b"desc\0\0\0\0" + struct.pack(">I", 5) + b"test\0" + b"\0" * 78
    tags = [
        (b"desc", desc),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(*red)),
        (b"gXYZ", _xyz(*green)),
        (b"bXYZ", _xyz(*blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0none\0"),
    ]
    offset = 132 + 12 * len(tags)
    table = body = b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", offset + len(body))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + _xyz(0.9642, 1.0, 0.8249)[8:]
        + b"\0" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + body


def as_seen(data: bytes) -> tuple[float, ...]:
    """The mean colour as a colour-managed viewer (Discord's client, a browser) shows it."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        rgb = img.convert("RGB")
        icc = img.info.get("icc_profile")
    if icc:
        embedded = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        rgb = ImageCms.profileToProfile(rgb, embedded, ImageCms.createProfile("sRGB"))
    assert isinstance(rgb, Image.Image)
    return tuple(ImageStat.Stat(rgb).mean)


async def test_a_re_encoded_source_keeps_the_colours_its_colour_profile_gives_it(tmp_path):
    # A phone photo: a wide-gamut profile and a portrait EXIF orientation (so it is re-encoded).
    # Here the profile swaps red and blue: the file's red pixels are blue on screen.
    swapped = rgb_profile(SRGB_BLUE, SRGB_GREEN, SRGB_RED)
    exif = Image.Exif()
    exif[0x0112] = 6
    noise = os.urandom(96 * 72)
    reds = Image.frombytes("L", (96, 72), noise).point(lambda v: 180 + v // 4)
    dark = Image.new("L", (96, 72), 0)
    buffer = io.BytesIO()
    Image.merge("RGB", (reds, dark, dark)).save(
        buffer, "JPEG", quality=95, icc_profile=swapped, exif=exif.tobytes()
    )
    attached = buffer.getvalue()
    seen = as_seen(attached)
    assert seen[2] > 150 and seen[0] < 60  # what the member sees: blue
    # A budget the noisy photo fits only as a JPEG.
    async with world(tmp_path, media={"max_source_bytes": len(attached) * 2}) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it autumn", "quality": "low"},
            attachments={"image": ("phone.jpg", attached, "image/jpeg")},
        )
        await finish(w, h)
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        mime, sent = sent_bytes(w.sim, url)
        assert mime == "image/jpeg" and image_size(sent) == (72, 96)  # re-encoded, upright
        shown = as_seen(sent)
        assert max(abs(a - b) for a, b in zip(shown, seen, strict=True)) <= 12, (shown, seen)


def bare_pixels(data: bytes) -> tuple[float, ...]:
    """The mean colour as a reader that ignores colour profiles (as the models do) sees it."""
    with Image.open(io.BytesIO(data)) as img:
        return tuple(ImageStat.Stat(img.convert("RGB")).mean)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
async def test_a_source_that_fits_goes_in_the_colours_its_profile_gives_it(tmp_path, fmt):
    """A landscape phone photo is upright as stored and small enough to go as attached; its
    wide-gamut profile must still be applied, as for a re-encoded one: a model reads the
    pixels as sRGB. Here the profile swaps red and blue (the file's red is blue on screen)."""
    swapped = rgb_profile(SRGB_BLUE, SRGB_GREEN, SRGB_RED)
    reds = Image.frombytes("L", (96, 72), os.urandom(96 * 72)).point(lambda v: 180 + v // 4)
    dark = Image.new("L", (96, 72), 0)
    buffer = io.BytesIO()
    Image.merge("RGB", (reds, dark, dark)).save(buffer, fmt, icc_profile=swapped)
    attached = buffer.getvalue()
    seen = as_seen(attached)
    assert seen[2] > 150 and seen[0] < 60  # what the member sees: blue
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it autumn", "quality": "low"},
            attachments={"image": (f"phone.{fmt.lower()}", attached, f"image/{fmt.lower()}")},
        )
        await finish(w, h)
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        _, sent = sent_bytes(w.sim, url)
        shown = bare_pixels(sent)
        assert max(abs(a - b) for a, b in zip(shown, seen, strict=True)) <= 12, (shown, seen)


def with_damaged_exif(fmt: str, width: int, height: int) -> bytes:
    """A whole image whose EXIF block is not EXIF at all (some editors and converters write
    such): its pixels are fine, and Discord shows it as stored."""
    buffer = io.BytesIO()
    photo = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    photo.save(buffer, fmt, exif=b"Exif\x00\x00not a TIFF header")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("command", "fmt"),
    [
        ("edit gpt-image-2", "PNG"),  # fits: sent as attached
        ("edit gpt-image-2", "WEBP"),
        ("edit dall-e-2", "PNG"),  # always re-encoded (an RGBA PNG)
    ],
)
async def test_an_image_with_a_damaged_exif_block_is_edited_as_it_looks(tmp_path, command, fmt):
    attached = with_damaged_exif(fmt, 64, 64)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            command,
            options={"prompt": "make it autumn"},
            attachments={"image": (f"photo.{fmt.lower()}", attached, f"image/{fmt.lower()}")},
        )
        _, result = await finish(w, h)
        step = w.sim.submissions[0]["steps"][0]["input"]
        [url] = step.get("images") or [step["image"]]
        assert image_size(sent_bytes(w.sim, url)[1]) == (64, 64)
        assert result["attachments"]
