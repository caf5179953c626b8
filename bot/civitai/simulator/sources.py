"""Input images as the orchestrator takes them: a URL (here: one of this simulator's blobs), a
data URL, or raw Base64. There is no internet from here: any other URL cannot be loaded."""

from __future__ import annotations

import base64
import binascii
import io
import logging
from typing import TYPE_CHECKING

from PIL import Image

from bot.civitai.placeholder import data_url_size
from bot.civitai.simulator.steps import Source

if TYPE_CHECKING:
    from bot.civitai.simulator.server import Simulator

log = logging.getLogger(__name__)

# PIL's format names → the schema's outputFormat spelling.
FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webP"}


def load(sim: Simulator, source: str) -> Source | None:
    blob_id = sim.blobs.blob_id_of(source)
    if blob_id is not None:
        found = sim.locate(blob_id)
        if found is None or found[1] != "ok":
            return None
        record = found[0]
        return decode(sim.blobs.content(record), record.nsfw_level)
    if source.startswith(("http://", "https://")):
        return None
    data = _base64(source)
    return decode(data) if data else None


def size(sim: Simulator, source: str) -> tuple[int, int] | None:
    """The pixel size without drawing anything: a blob's recorded size, or a data URL's header."""
    blob_id = sim.blobs.blob_id_of(source)
    if blob_id is not None:
        record = sim.blobs.get(blob_id)
        if record is None or not record.width or not record.height:
            return None
        return record.width, record.height
    return data_url_size(source)


def decode(data: bytes, nsfw_level: str | None = None) -> Source | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            fmt = FORMATS.get(image.format or "", "png")
    except (OSError, ValueError):
        return None
    return Source(data, width, height, fmt, nsfw_level)


def _base64(source: str) -> bytes | None:
    payload = source.split(",", 1)[1] if source.startswith("data:") else source
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None
