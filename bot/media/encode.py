"""Encoding an image under a byte budget: each (format, quality) at full size, then scaled down
with the last one, aborting an encoder as soon as its output passes the budget."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from bot.media.webp import encode_rgba

SCALE_STEP = 0.85
MIN_SIDE = 16  # below this an image is useless: give up rather than shrink further
MAX_SIDE = {"PNG": 2**31 - 1, "JPEG": 65_500, "WEBP": 16_383}
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSION = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
FORMAT_NAME = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
# JPEG from this quality up keeps colour at full resolution (no chroma subsampling).
FULL_COLOUR_QUALITY = 95
# WebP's alpha: quantized to within one level (invisible), which compresses it ~3x faster.
WEBP_ALPHA_QUALITY = 90


@dataclass(frozen=True)
class Encoded:
    data: bytes
    fmt: str  # Pillow's format name
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def fit_to_budget(image: Image.Image, limit: int, steps: list[tuple[str, int | None]]) -> Encoded:
    """Try each (format, quality) at full size, then scale down with the last until it fits."""
    fmt, quality = steps[-1]
    largest = min(MAX_SIDE[f] for f, _ in steps)
    longest = max(image.size)
    if longest <= largest:
        for step_fmt, step_quality in steps:
            data = encode_capped(image, step_fmt, step_quality, limit)
            if data is not None:
                return Encoded(data, step_fmt, image.width, image.height)
    # Each step scales the original, so the blur of one resize does not compound.
    scale = min(1.0, largest / longest)
    if scale == 1.0:
        scale = SCALE_STEP
    while longest * scale >= MIN_SIDE:
        size = _scaled(image.size, scale)
        data = encode_capped(resized(image, size), fmt, quality, limit)
        if data is not None:
            return Encoded(data, fmt, *size)
        scale *= SCALE_STEP
    raise ValueError(f"cannot fit a {image.width}x{image.height} image into {limit} bytes")


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    width, height = size
    return (max(1, round(width * scale)), max(1, round(height * scale)))


def resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    # reducing_gap: a fast box reduction first, then Lanczos for the last factor of two.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


class _OverBudget(Exception):
    pass


class _CappedBuffer(io.BytesIO):
    """Aborts the encoder once its output passes the cap: a PNG that cannot fit is not finished."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.cap:
            raise _OverBudget
        return super().write(data)


def encoder_options(fmt: str, quality: int | None) -> dict[str, int]:
    """Pillow's save options for a (format, quality) step."""
    if quality is None:
        return {}
    options = {"quality": quality}
    if fmt == "JPEG" and quality >= FULL_COLOUR_QUALITY:
        options["subsampling"] = 0  # 4:4:4: at this quality, halved colour would be the loss
    if fmt == "WEBP":
        # libwebp's fastest method: about 4x faster than its default (4) on a 4K photo, for a
        # file a few percent larger at the same quality; alpha within ±1 level (65 dB).
        options["method"] = 0
        options["alpha_quality"] = WEBP_ALPHA_QUALITY
    return options


def encode_capped(image: Image.Image, fmt: str, quality: int | None, cap: int) -> bytes | None:
    """The encoded bytes, or None when they would be more than `cap`."""
    if fmt == "WEBP" and quality is not None:
        fast = encode_rgba(image, quality, WEBP_ALPHA_QUALITY)
        if fast is not None:
            return fast if len(fast) <= cap else None
    buffer = _CappedBuffer(cap)
    options = encoder_options(fmt, quality)
    try:
        image.save(buffer, fmt, **options)
    except _OverBudget:
        return None
    return buffer.getvalue()
