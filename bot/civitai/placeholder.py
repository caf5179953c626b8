"""Placeholder images for the simulator: the requested size and format, the prompt drawn on."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webP": "WEBP"}
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webP": "image/webp"}


def render(prompt: str, width: int, height: int, fmt: str, caption: str) -> bytes:
    digest = hashlib.sha256(prompt.encode()).digest()
    background = (digest[0] // 2 + 40, digest[1] // 2 + 40, digest[2] // 2 + 40)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    font_size = max(10, min(width, height) // 24)
    font = ImageFont.load_default(size=font_size)
    chars = max(8, int(width / (font_size * 0.6)) - 4)
    lines = [*textwrap.wrap(prompt, chars)[:8], "", caption, "SIMULATED - no Buzz spent"]
    y = font_size
    for line in lines:
        draw.text((font_size, y), line, fill=(255, 255, 255), font=font)
        y += int(font_size * 1.3)
    buffer = io.BytesIO()
    image.save(buffer, format=PIL_FORMATS.get(fmt, "JPEG"), quality=80)
    return buffer.getvalue()


def data_url_size(source: str) -> tuple[int, int] | None:
    """The pixel size of a data-URL or base64 source image, reading only its header."""
    payload = source.split(",", 1)[1] if source.startswith("data:") else source
    try:
        raw = base64.b64decode(payload[: 64 * 1024 * 4 // 3 + 4], validate=False)
        with Image.open(io.BytesIO(raw)) as img:
            return img.size
    except (binascii.Error, ValueError, OSError):
        return None


def upscale(source: bytes, width: int, height: int, fmt: str, caption: str) -> bytes:
    """The source enlarged to (width, height), captioned as simulated."""
    with Image.open(io.BytesIO(source)) as original:
        mode = "RGBA" if fmt != "jpeg" and original.mode in ("RGBA", "LA", "P") else "RGB"
        image = original.convert(mode).resize((width, height), Image.Resampling.BICUBIC)
    _banner(image, f"{caption} · SIMULATED - no Buzz spent")
    return _save(image, fmt)


def cut_out(source: bytes, width: int, height: int, fmt: str) -> bytes:
    """The source with its "background" removed: an ellipse of subject kept (alpha 255) and
    everything outside it fully transparent (alpha 0), so the cut is plain to see."""
    with Image.open(io.BytesIO(source)) as original:
        image = original.convert("RGBA").resize((width, height), Image.Resampling.BICUBIC)
    mask = Image.new("L", (width, height), 0)
    inset_x, inset_y = width // 6, height // 6
    ImageDraw.Draw(mask).ellipse(
        (inset_x, inset_y, width - 1 - inset_x, height - 1 - inset_y), fill=255
    )
    image.putalpha(mask)
    return _save(image, fmt)


def _banner(image: Image.Image, text: str) -> None:
    width, height = image.size
    font_size = max(10, min(width, height) // 32)
    font = ImageFont.load_default(size=font_size)
    draw = ImageDraw.Draw(image)
    box = (0, height - int(font_size * 1.8), width, height)
    draw.rectangle(box, fill=(0, 0, 0, 255) if image.mode == "RGBA" else (0, 0, 0))
    draw.text((font_size, box[1] + font_size // 3), text, fill=(255, 255, 255), font=font)


def _save(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=PIL_FORMATS.get(fmt, "PNG"), quality=80)
    return buffer.getvalue()
