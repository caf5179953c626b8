"""From a member's attachments to the sources a job stores: download them all, then prepare
each on the shared image pool, one file at a time, the way the model takes it — as attached
when it already fits, else decoded and re-encoded — and the mask against the first image."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from bot.catalog.names import Model
from bot.media.attachments import download
from bot.media.decode import decode, sniff_mime
from bot.media.limits import AttachmentInfo, MediaLimits
from bot.media.pool import ImagePool
from bot.media.sources import check_sources, prepare_mask, prepare_source
from bot.store.jobs import SourceImage

MASK = "mask"


async def prepare_attachments(
    http: httpx.AsyncClient,
    attachments: Sequence[AttachmentInfo],
    model: Model,
    limits: MediaLimits,
    pool: ImagePool,
) -> list[SourceImage]:
    """The sources to store with the job: images first (in option order), then the mask.
    Raises MediaError naming the option when a file cannot be used."""
    images = [a for a in attachments if a.option != MASK]
    masks = [a for a in attachments if a.option == MASK]
    check_sources(model, len(images))
    ordered = (*images, *masks)
    files: list[bytes | None] = list(
        await asyncio.gather(*(download(http, info, limits) for info in ordered))
    )
    sources: list[SourceImage] = []
    for index, info in enumerate(ordered):
        # Let go of each download once it is prepared: a kept source is the same bytes, a
        # re-encoded one is smaller, and only one decoded image is alive per job at a time.
        data, files[index] = files[index], None
        assert data is not None
        if info.option == MASK:
            # Against the source as it will be sent (it may have been scaled to fit).
            sources.append(await pool.run(_mask, data, sources[0], model, limits))
        else:
            png_only = bool(masks) and index == 0  # OpenAI wants a masked image as a PNG
            sources.append(
                await pool.run(prepare_source, data, info.option, model, limits, png_only=png_only)
            )
        del data
    return sources


def _mask(data: bytes, first: SourceImage, model: Model, limits: MediaLimits) -> SourceImage:
    return prepare_mask(decode(data, MASK, limits), first, model, limits=limits)


def declared_source(info: AttachmentInfo) -> SourceImage:
    """An attachment as Discord describes it, for the checks made before downloading."""
    role = MASK if info.option == MASK else "image"
    mime = info.content_type or sniff_mime(b"")
    return SourceImage(role, mime, info.width or 0, info.height or 0, b"")
