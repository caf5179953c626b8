"""Edit sources sent as the member attached them: a file that already fits the byte budget, in a
format the models take, upright and in sRGB, is checked and kept byte for byte — no re-encode, so
no quality lost and no CPU spent. Anything else goes through the decoder and the encoder
(bot.media.sources)."""

from __future__ import annotations

import io

from PIL import Image

from bot.media.decode import DECODERS, check_chunks, check_scans, is_srgb, orientation
from bot.media.limits import KINDS, MediaError, MediaLimits, check_pixels, megapixels
from bot.store.jobs import SourceImage

# What every edit model takes as it is (GIF is not among them: it is re-encoded).
KEPT_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
KEPT_MODES = frozenset({"RGB", "RGBA"})


def kept_original(
    data: bytes, option: str, limits: MediaLimits, *, png_only: bool = False
) -> SourceImage | None:
    """The attachment as a source, unchanged, when it can go as it is; None when it must be
    re-encoded. Raises MediaError for what the decoder would refuse too (too many pixels, a
    damaged file), with the same words."""
    if len(data) > limits.max_source_bytes:
        return None
    check_scans(data, option)  # before _check_whole decodes it
    check_chunks(data, option)
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except Exception:  # a bomb, a damaged header: the decoder says which, in its words
        return None
    with image:
        fmt = image.format or ""
        if fmt not in KEPT_FORMATS or (png_only and fmt != "PNG"):
            return None
        if image.mode not in KEPT_MODES or getattr(image, "n_frames", 1) > 1:
            return None
        icc = image.info.get("icc_profile")
        if icc and not is_srgb(icc):
            return None  # a model reads the pixels as sRGB: the decoder applies the profile
        width, height = image.size
        check_pixels(option, width, height, limits.max_pixels)
        _check_whole(image, option, limits)
        # After loading: a PNG's EXIF may come after its pixels.
        if orientation(image) != 1:
            return None  # shown rotated: the decoder turns the pixels upright
    return SourceImage("image", KEPT_FORMATS[fmt], width, height, data)


def _check_whole(image: Image.Image, option: str, limits: MediaLimits) -> None:
    """Decode it once to prove the file is whole, as the decoder would have. A JPEG is decoded
    at 1/8 scale: its whole entropy stream is still read, at a fraction of the cost."""
    if image.format == "JPEG":
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = megapixels(limits.max_pixels)
        raise MediaError(
            option, f"{option} has too many pixels; the limit is {limit} megapixels"
        ) from None
    except Exception:  # Pillow's plugins raise many types on malformed input
        damaged = f"{option} is not {KINDS} image (or the file is damaged)"
        raise MediaError(option, damaged) from None
