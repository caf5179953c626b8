"""A posted result, fetched back from the chat service as the source of another step (an
upscale, a cut-out): the bytes as posted when they fit the source budget, else re-encoded."""

from __future__ import annotations

import asyncio

import httpx

from bot.catalog.names import Model
from bot.media.attachments import download
from bot.media.decode import decode, probe_image
from bot.media.limits import AttachmentInfo, MediaLimits
from bot.media.sources import prepare_sources
from bot.store.jobs import SourceImage

KEPT_AS_POSTED = frozenset({"image/png", "image/jpeg", "image/webp"})


async def posted_source(
    http: httpx.AsyncClient, info: AttachmentInfo, limits: MediaLimits
) -> SourceImage:
    """The image as a stored source. Raises MediaError naming `info.option`."""
    data = await download(http, info, limits)
    image = await asyncio.to_thread(decode, data, info.option, limits)  # checks it, pixel cap
    mime, width, height = await asyncio.to_thread(probe_image, data)
    if mime in KEPT_AS_POSTED and len(data) <= limits.max_source_bytes:
        return SourceImage("image", mime, width, height, data)
    # Too big to send inline (or a GIF): re-encoded like an edit source, under the budget.
    [source] = await asyncio.to_thread(prepare_sources, [image], Model.GPT_IMAGE_2, limits)
    return source
