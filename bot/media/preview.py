"""A partial image made fit to show on a status message: decoded whole (a preview that does not
decode is not shown broken), scaled down and re-encoded small. It is only a preview: a 4K PNG
partial would take long to upload, or be refused (413) over the channel's upload limit."""

from __future__ import annotations

import io

from PIL import Image

from bot.media.decode import DECODERS, has_transparency, probe_image, rgb_or_rgba
from bot.media.encode import EXTENSION, MIME, fit_to_budget
from bot.media.fit import FittedImage

# Longest side and most bytes of a preview: enough to see the image form, quick to upload.
PREVIEW_SIDE = 1024
PREVIEW_BYTES = 512 * 1024
PREVIEW_QUALITIES = (80, 65, 50)


def fit_preview(data: bytes, limit: int, max_pixels: int) -> FittedImage:
    """A small JPEG (WebP when it has transparency) of `data`, under `limit` and PREVIEW_BYTES.
    ValueError when `data` is not a whole image (damaged, cut short) or is over `max_pixels`."""
    mime, width, height = probe_image(data)
    if width * height > max_pixels:
        raise ValueError(f"{width}x{height} is over the {max_pixels:,}-pixel limit")
    try:
        with Image.open(io.BytesIO(data), formats=DECODERS) as opened:
            opened.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))  # JPEG: decode at a reduced scale
            opened.load()
            image = rgb_or_rgba(opened)
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BILINEAR)
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"a damaged {mime} ({type(exc).__name__})") from None
    fmt = "WEBP" if has_transparency(image) else "JPEG"
    image = image.convert("RGBA" if fmt == "WEBP" else "RGB")
    budget = min(limit, PREVIEW_BYTES)
    encoded = fit_to_budget(image, budget, [(fmt, q) for q in PREVIEW_QUALITIES])
    out = MIME[fmt]
    return FittedImage(encoded.data, out, EXTENSION[out], encoded.width, encoded.height, None)
