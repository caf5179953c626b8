"""The threaded libwebp encoder: a real WebP with its alpha kept, the same file Pillow's own
encoder makes with the same settings, and nothing for what it does not handle."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageChops, ImageDraw

from bot.media.encode import encoder_options
from bot.media.webp import encode_rgba


def cutout(width: int, height: int) -> Image.Image:
    rng = random.Random(4)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    alpha = Image.new("L", (width, height), 0)
    ImageDraw.Draw(alpha).ellipse((20, 10, width - 20, height - 10), fill=255)
    image.putalpha(alpha)
    return image


def test_it_makes_the_webp_pillow_makes_with_the_same_settings() -> None:
    image = cutout(320, 200)
    fast = encode_rgba(image, 90, 90)
    assert fast is not None and fast[:4] == b"RIFF" and fast[8:12] == b"WEBP"
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", **encoder_options("WEBP", 90))
    assert fast == buffer.getvalue()  # threads change the speed, not the bytes


def test_the_alpha_survives() -> None:
    image = cutout(160, 120)
    data = encode_rgba(image, 90, 90)
    assert data is not None
    with Image.open(io.BytesIO(data)) as decoded:
        alpha = decoded.convert("RGBA").getchannel("A")
    _, high = ImageChops.difference(alpha, image.getchannel("A")).getextrema()
    assert high <= 1  # within one level, as alpha_quality 90 promises


def test_anything_but_rgba_is_left_to_pillow() -> None:
    assert encode_rgba(Image.new("RGB", (16, 16), "red"), 90, 90) is None
