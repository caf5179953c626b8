"""Images out: a result fitted to Discord's upload limit (re-encoded, scaled if need be)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from bot.media.decode import DECODERS, has_transparency, rgb_or_rgba, sniff_mime
from bot.media.encode import EXTENSION, FORMAT_NAME, MIME, fit_to_budget
from bot.media.limits import human_size

# Best first: a 4K photo at JPEG 98 (4:4:4) is ~9 MB and not visibly different (PSNR > 40 dB),
# and an encoder that passes the limit is stopped there, so a miss costs little.
UPLOAD_QUALITIES = {"JPEG": (98, 95, 90, 80, 70, 60), "WEBP": (90, 80, 70, 60)}


@dataclass(frozen=True)
class FittedImage:
    data: bytes
    mime: str
    extension: str  # "png" | "jpg" | "webp" ("gif" only when an unchanged GIF is passed through)
    width: int
    height: int
    note: str | None  # None when unchanged; else what was done, in plain words


def fit_for_upload(data: bytes, limit: int) -> FittedImage:
    """The image as is when it fits, else re-encoded (and scaled if need be) to `limit` bytes.

    Raises ValueError when `data` is not an image or `limit` is too small for even a tiny one.
    """
    mime = sniff_mime(data)
    if len(data) <= limit:
        width, height = _header_size(data)
        return FittedImage(data, mime, EXTENSION.get(mime, "bin"), width, height, None)
    image = _open_result(data)
    fmt = "WEBP" if has_transparency(image) else "JPEG"
    mode = "RGBA" if fmt == "WEBP" else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    encoded = fit_to_budget(image, limit, [(fmt, q) for q in UPLOAD_QUALITIES[fmt]])
    done = f"re-encoded as {FORMAT_NAME[fmt]} to fit the {human_size(limit)} upload limit"
    if encoded.size != image.size:
        done = f"scaled to {encoded.width}x{encoded.height} and {done}"
    out_mime = MIME[fmt]
    return FittedImage(
        encoded.data, out_mime, EXTENSION[out_mime], encoded.width, encoded.height, done
    )


def _header_size(data: bytes) -> tuple[int, int]:
    try:
        # Only the decoders sources get (EPS would start Ghostscript, and so on).
        with Image.open(io.BytesIO(data), formats=DECODERS) as image:
            return image.size
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"not an image ({type(exc).__name__})") from None


def _open_result(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data), formats=DECODERS) as image:
            image.load()
            # Re-encoding drops EXIF, so its orientation must be applied to the pixels now
            # (in place: a 4K image is 33 MB, a copy is not free).
            ImageOps.exif_transpose(image, in_place=True)
            return rgb_or_rgba(image)
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"not an image ({type(exc).__name__})") from None
