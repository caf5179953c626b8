"""From a member's attachments to the sources a job stores: download them all, decode each off
the event loop, and prepare the images and the mask the way the model takes them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from bot.catalog.names import Model
from bot.media.attachments import download
from bot.media.decode import decode, sniff_mime
from bot.media.limits import AttachmentInfo, MediaLimits
from bot.media.sources import prepare_mask, prepare_sources
from bot.store.jobs import SourceImage

MASK = "mask"


async def prepare_attachments(
    http: httpx.AsyncClient,
    attachments: Sequence[AttachmentInfo],
    model: Model,
    limits: MediaLimits,
) -> list[SourceImage]:
    """The sources to store with the job: images first (in option order), then the mask.
    Raises MediaError naming the option when a file cannot be used."""
    images = [a for a in attachments if a.option != MASK]
    masks = [a for a in attachments if a.option == MASK]
    ordered = (*images, *masks)
    blobs = await asyncio.gather(*(download(http, info, limits) for info in ordered))
    decoded = [
        await asyncio.to_thread(decode, data, info.option, limits)
        for data, info in zip(blobs, ordered, strict=True)
    ]
    sources = await asyncio.to_thread(
        prepare_sources, decoded[: len(images)], model, limits, masked=bool(masks)
    )
    if masks:
        # Against the source as it will be sent (it may have been scaled to fit).
        mask = await asyncio.to_thread(prepare_mask, decoded[-1], sources[0], model, limits=limits)
        sources.append(mask)
    return sources


def declared_source(info: AttachmentInfo) -> SourceImage:
    """An attachment as Discord describes it, for the checks made before downloading."""
    role = MASK if info.option == MASK else "image"
    mime = info.content_type or sniff_mime(b"")
    return SourceImage(role, mime, info.width or 0, info.height or 0, b"")
