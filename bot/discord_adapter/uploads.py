"""Uploading a result to Discord: the images fitted to the upload limit, split into messages
(at most ten files and one request's worth of bytes each), and Discord's expected faults
turned into what the engine understands (PostFailed) or a signal to shrink (a 413)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator

import aiohttp
import discord

from bot.engine.publisher import PostFailed, ResultImage
from bot.media.fit import FittedImage, fit_for_upload
from bot.media.pool import ImagePool

MAX_FILES = 10
# Discord caps a whole request as well as each file: a result larger than this is split.
MESSAGE_BYTES = 25 * 1024 * 1024
# A post's answer is waited for this long, plus its upload at UPLOAD_RATE: aiohttp's own limit
# is 5 minutes, all that time holding a delivery turn. A post given up is looked for (it may
# have landed) before it is made again (engine/results.py).
POST_WAIT = 60.0
UPLOAD_RATE = 256 * 1024  # bytes a second: a slow uplink
# Failures to reach Discord at all (not an answer from it).
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


class TooLarge(Exception):
    """Discord answered 413: the files (the largest `largest` bytes) are over its real limit."""

    def __init__(self, largest: int) -> None:
        super().__init__(f"413 for a file of {largest:,} bytes")
        self.largest = largest


@contextlib.contextmanager
def passing_faults() -> Iterator[None]:
    """Discord's passing faults (429, 5xx, a long rate limit, no connection) become
    PostFailed(retry=True); refusals (403/404, expired tokens) stay HTTPExceptions."""
    try:
        yield
    except discord.HTTPException as exc:
        if exc.status == 429 or exc.status >= 500:
            raise PostFailed(f"Discord answered {exc.status}", retry=True) from None
        raise
    except discord.RateLimited as exc:  # longer than ratelimits.RATE_LIMIT_WAIT: not slept out
        raise PostFailed(
            f"Discord asks to wait {exc.retry_after:.0f}s", retry=True, retry_after=exc.retry_after
        ) from None
    except NETWORK_ERRORS as exc:
        raise PostFailed(f"cannot reach Discord ({type(exc).__name__})", retry=True) from None


async def sending(call: Awaitable[discord.Message | None], largest: int) -> discord.Message:
    """Await one post; Discord's expected faults become PostFailed (retry later) or TooLarge,
    refusals (403/404, expired tokens) stay HTTPExceptions for the caller's fallbacks."""
    upload = min(MESSAGE_BYTES, MAX_FILES * largest) / UPLOAD_RATE
    with passing_faults():  # the timeout's TimeoutError is a passing fault
        try:
            async with asyncio.timeout(POST_WAIT + upload):
                message = await call
        except discord.HTTPException as exc:
            if exc.status == 413:
                raise TooLarge(largest) from None
            raise
    assert message is not None  # wait=True
    return message


async def fit_all(pool: ImagePool, images: list[ResultImage], limit: int) -> list[FittedImage]:
    # One pool call per image: another job's images (or an edit's sources) can go in between.
    fitted = []
    for image in images:
        try:
            fitted.append(await pool.run(fit_for_upload, image.data, limit))
        except ValueError as exc:
            # Never post a result with an image silently left out.
            raise PostFailed(
                f"image {image.index + 1} cannot be fitted under {limit:,} bytes", retry=False
            ) from exc
    return fitted


def split(
    fitted: list[FittedImage], limit: int, message_bytes: int
) -> list[list[tuple[int, FittedImage]]]:
    """Images into messages: at most 10 files and `message_bytes` (or one file) per message."""
    cap = max(limit, message_bytes)
    parts: list[list[tuple[int, FittedImage]]] = []
    current: list[tuple[int, FittedImage]] = []
    size = 0
    for n, image in enumerate(fitted):
        if current and (len(current) == MAX_FILES or size + len(image.data) > cap):
            parts.append(current)
            current, size = [], 0
        current.append((n, image))
        size += len(image.data)
    parts.append(current)
    return parts
