"""What the Images API answers, read safely: streamed events or a plain JSON body, images capped.

A stream is complete when it has delivered one `*.completed` event per requested image, or when
it ended cleanly (end of body or `[DONE]`) after at least one. A stream that ends with no
completed event, or breaks (a transport error) before every image arrived, is broken: the client
retries it. Partial images are previews: one that is not valid base64 or is over the cap is
skipped with a warning. A final image that is not a usable image is left out and named in
`unusable` (the others were made and billed with it, and are kept); when none is usable the whole
answer is a BadResponse.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.openai_api.errors import BadResponse

log = logging.getLogger(__name__)

# The magic bytes of what the Images API can answer in: PNG, JPEG, WebP (and GIF).
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


@dataclass(frozen=True)
class PartialImage:
    """A preview while streaming: image `index` (0-based, in request order), preview number
    `partial_index` (0-based, as the endpoint numbers them)."""

    index: int
    partial_index: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ImagesResult:
    images: list[bytes] = field(repr=False)
    # Token usage as the endpoint reports it (summed over images when each reports its own),
    # including partial images' extra output tokens. None when the endpoint reports none.
    usage: dict[str, Any] | None
    output_format: str | None
    size: str | None
    quality: str | None
    background: str | None
    revised_prompt: str | None = None  # dall-e-3 rewrites prompts and says how
    streamed: bool = False
    # Each completed event's own usage, as sent (a stream reports one per image).
    usages: tuple[dict[str, Any], ...] = ()
    # Why each final image left out was unusable (not base64, not an image, over the cap).
    unusable: tuple[str, ...] = ()


OnPartial = Callable[[PartialImage], Awaitable[None]]
# Told why each try that may have run (and been billed) upstream is being made again.
OnLost = Callable[[str], Awaitable[None]]


class ImageReader:
    """Decodes base64 images with a byte cap; refuses anything that is not an image."""

    def __init__(self, max_image_bytes: int) -> None:
        self.max_image_bytes = max_image_bytes

    @property
    def max_encoded(self) -> int:
        return (self.max_image_bytes + 2) // 3 * 4

    def final(self, value: object, what: str) -> bytes:
        if not isinstance(value, str) or not value:
            raise BadResponse(f"{what} has no b64_json image")
        if len(value) > self.max_encoded + 8:
            raise BadResponse(f"{what} is over the {self.max_image_bytes:,} byte cap")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            try:  # a base64 text wrapped over lines is still base64
                data = base64.b64decode("".join(value.split()), validate=True)
            except (binascii.Error, ValueError):
                raise BadResponse(f"{what} is not valid base64") from None
        if len(data) > self.max_image_bytes:
            raise BadResponse(f"{what} is over the {self.max_image_bytes:,} byte cap")
        if not _is_image(data):
            raise BadResponse(f"{what} is not a PNG, JPEG or WebP image")
        return data

    def preview(self, value: object, what: str) -> bytes | None:
        try:
            return self.final(value, what)
        except BadResponse as exc:
            log.warning("skipped a preview: %s", exc)
            return None


def _is_image(data: bytes) -> bool:
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


class StreamState:
    """Collects a stream's events into images, previews and usage."""

    def __init__(self, reader: ImageReader, expected: int, on_partial: OnPartial | None) -> None:
        self.reader = reader
        self.expected = max(1, expected)
        self.on_partial = on_partial
        self.images: list[bytes] = []
        self.unusable: list[str] = []
        self.usages: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.events = 0
        self.partials = 0  # partial image events, usable or not: output the call produced
        self.done = False  # the endpoint said [DONE]
        self.errors: list[dict[str, Any]] = []

    @property
    def complete(self) -> bool:
        return len(self.images) + len(self.unusable) >= self.expected

    async def handle(self, event: str | None, data: str) -> None:
        """One server-sent event. An `error` event is kept in `errors` for the client to map."""
        self.events += 1
        if data.strip() == "[DONE]":
            self.done = True
            return
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):  # nested deeper than the parser goes: not JSON
            log.warning("ignored a server-sent event that is not JSON (%d chars)", len(data))
            return
        if not isinstance(payload, dict):
            return
        kind = str(payload.get("type") or event or "")
        error = payload.get("error")
        if kind == "error" or event == "error" or isinstance(error, dict):
            self.errors.append(error if isinstance(error, dict) else payload)
        elif kind.endswith(".partial_image"):
            self.partials += 1
            await self._partial(payload)
        elif kind.endswith(".completed"):
            self._completed(payload)

    async def _partial(self, payload: dict[str, Any]) -> None:
        index = len(self.images)
        data = self.reader.preview(payload.get("b64_json"), f"preview of image {index + 1}")
        if data is None or self.on_partial is None:
            return
        partial_index = payload.get("partial_image_index")
        if not isinstance(partial_index, int):
            partial_index = 0
        try:
            await self.on_partial(PartialImage(index, partial_index, data))
        except Exception:  # a failed preview must not lose the image being paid for
            log.exception("the partial image callback failed; the request goes on")

    def _completed(self, payload: dict[str, Any]) -> None:
        number = len(self.images) + len(self.unusable) + 1
        try:
            self.images.append(self.reader.final(payload.get("b64_json"), f"image {number}"))
        except BadResponse as exc:
            self.unusable.append(str(exc))
        if isinstance(payload.get("usage"), dict):
            self.usages.append(payload["usage"])
        for key in ("output_format", "size", "quality", "background"):
            if isinstance(payload.get(key), str):
                self.meta[key] = payload[key]

    def result(self) -> ImagesResult:
        return ImagesResult(
            images=list(self.images),
            usage=sum_usage(self.usages),
            output_format=self.meta.get("output_format"),
            size=self.meta.get("size"),
            quality=self.meta.get("quality"),
            background=self.meta.get("background"),
            streamed=True,
            usages=tuple(self.usages),
            unusable=tuple(self.unusable),
        )


def read_json_result(body: bytes, reader: ImageReader) -> ImagesResult | dict[str, Any]:
    """A non-streamed answer: the result, or the `error` object when the body carries one."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # nested deeper than the parser goes: not JSON
        raise BadResponse(f"the answer is not JSON ({len(body):,} bytes)") from None
    if not isinstance(payload, dict):
        raise BadResponse("the answer is not a JSON object")
    if isinstance(payload.get("error"), dict):
        return payload["error"]
    items = payload.get("data")
    if not isinstance(items, list) or not items:
        raise BadResponse("the answer has no images")
    images, unusable = [], []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise BadResponse(f"image {number} is not an object")
        if not item.get("b64_json") and item.get("url"):
            raise BadResponse(f"image {number} came as a URL, not as base64 bytes")
        try:
            images.append(reader.final(item.get("b64_json"), f"image {number}"))
        except BadResponse as exc:
            unusable.append(str(exc))
    if not images:
        raise BadResponse(unusable[0])
    first = items[0]
    usage = payload.get("usage")

    def text(key: str) -> str | None:
        value = payload.get(key)
        return value if isinstance(value, str) else None

    revised = first.get("revised_prompt")
    return ImagesResult(
        images=images,
        usage=usage if isinstance(usage, dict) else None,
        output_format=text("output_format"),
        size=text("size"),
        quality=text("quality"),
        background=text("background"),
        revised_prompt=revised if isinstance(revised, str) else None,
        usages=(usage,) if isinstance(usage, dict) else (),
        unusable=tuple(unusable),
    )


def sum_usage(usages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One usage as it is; several (one per streamed image) added field by field."""
    if not usages:
        return None
    if len(usages) == 1:
        return usages[0]
    total: dict[str, Any] = {}
    for usage in usages:
        _add(total, usage)
    return total


def _add(total: dict[str, Any], usage: dict[str, Any]) -> None:
    for key, value in usage.items():
        if isinstance(value, bool):
            total.setdefault(key, value)
        elif isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        else:
            total.setdefault(key, value)
