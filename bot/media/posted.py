"""A posted result, fetched back from the chat service as the source of another step (an
upscale, a cut-out): the bytes as posted when they fit the source budget, else re-encoded."""

from __future__ import annotations

import httpx

from bot.catalog.names import Model
from bot.media.attachments import download
from bot.media.decode import decode, probe_image
from bot.media.limits import AttachmentInfo, MediaLimits
from bot.media.pool import ImagePool
from bot.media.sources import prepare_sources
from bot.store.jobs import SourceImage

KEPT_AS_POSTED = frozenset({"image/png", "image/jpeg", "image/webp"})


async def posted_source(
    http: httpx.AsyncClient, info: AttachmentInfo, limits: MediaLimits, pool: ImagePool
) -> SourceImage:
    """The image as a stored source, decoded in turn with all other image work on `pool`.
    Raises MediaError naming `info.option`."""
    data = await download(http, info, limits)
    image = await pool.run(decode, data, info.option, limits)  # checks it, pixel cap
    mime, width, height = await pool.run(probe_image, data)
    if mime in KEPT_AS_POSTED and len(data) <= limits.max_source_bytes:
        return SourceImage("image", mime, width, height, data)
    # Too big to send inline (or a GIF): re-encoded like an edit source, under the budget.
    [source] = await pool.run(prepare_sources, [image], Model.GPT_IMAGE_2, limits)
    return source
