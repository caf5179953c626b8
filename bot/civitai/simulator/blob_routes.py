"""/v2/consumer/blobs: GetBlob (a redirect to signed content), the content itself, uploads
(direct with a token, or through a presigned URL) and RefreshBlob."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING

from aiohttp import BodyPartReader, web

from bot.civitai.placeholder import CONTENT_TYPES
from bot.civitai.simulator.blobs import BlobRecord
from bot.civitai.simulator.responses import iso, json_response, problem
from bot.civitai.simulator.scripting import NSFW_LEVELS, rank
from bot.civitai.simulator.sources import decode
from bot.civitai.simulator.views import blob_json, upload_json

if TYPE_CHECKING:
    from bot.civitai.simulator.server import Simulator

log = logging.getLogger(__name__)

BLOBS = "/v2/consumer/blobs"
# The biggest upload taken (the schema has a 413 for more; its limit is not published).
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
# Images this big are drawn off the event loop (the bot's own loop, when it runs simulated).
DRAW_IN_THREAD_PIXELS = 1024 * 1024
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webP": "webp"}


class BlobRoutes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def register(self, app: web.Application) -> None:
        # The presign route first: "upload" would otherwise match GetBlob's {id}.
        app.router.add_get(BLOBS + "/upload", self.presign)
        app.router.add_post(BLOBS, self.upload)
        app.router.add_get(BLOBS + "/content/{token}", self.content)
        app.router.add_post(BLOBS + "/{id}/refresh", self.refresh)
        app.router.add_get(BLOBS + "/{id}", self.get)

    async def get(self, request: web.Request) -> web.Response:
        """GetBlob: 308 to the content URL; 403 above the `nsfwLevel` asked for, or for mature
        output the workflow may not return; 404 for no such blob (or not yet, or blocked)."""
        sim = self.sim
        if (early := sim.gate(request, "blob")) is not None:
            return early
        found = sim.locate(request.match_info["id"])
        if found is None or found[1] in ("pending", "blocked"):
            return problem(404, "blob not found")
        record, state = found
        if state == "restricted":
            return problem(403, "mature content is not allowed on this workflow")
        ceiling = request.query.get("nsfwLevel")
        if ceiling in NSFW_LEVELS and rank(record.nsfw_level) > rank(ceiling):
            return problem(403, f"the blob is rated above {ceiling}")
        url, _ = sim.blobs.content_url(record.id)
        raise web.HTTPPermanentRedirect(url)

    async def content(self, request: web.Request) -> web.Response:
        sim = self.sim
        if (early := sim.gate(request, "blob", auth=False)) is not None:
            return early
        blob_id = sim.blobs.verify(request.match_info["token"])
        if blob_id is None:
            return problem(403, "the blob URL is invalid or has expired")
        found = sim.locate(blob_id)
        if found is None or found[1] != "ok":
            return problem(404, "blob not found")
        record = found[0]
        if record.owner is not None:
            wf, _, index = sim.owner(record)
            if index in wf.outcome.unavailable_blobs:
                return problem(503, "the blob store cannot serve this blob")
        data = await self._bytes(record)
        headers = {"Content-Type": CONTENT_TYPES[record.fmt], "x-nsfw-level": record.nsfw_level}
        return web.Response(body=data, headers=headers)

    async def presign(self, request: web.Request) -> web.Response:
        """GetConsumerBlobUploadUrl: a URL that takes one POST without a token."""
        if (early := self.sim.gate(request, "upload")) is not None:
            return early
        url, expires = self.sim.blobs.sign_upload()
        return json_response(200, {"uploadUrl": url, "expiresAt": iso(expires)})

    async def upload(self, request: web.Request) -> web.Response:
        """UploadConsumerBlob: the image as the body (or a multipart file); 201 with the Blob."""
        sim = self.sim
        signed = sim.blobs.verify_upload(request.query.get("exp", ""), request.query.get("sig", ""))
        if (early := sim.gate(request, "upload", auth=not signed)) is not None:
            return early
        if (request.content_length or 0) > MAX_UPLOAD_BYTES:
            return problem(413, f"uploads are limited to {MAX_UPLOAD_BYTES} bytes")
        data, content_type = await _read_upload(request)
        if not data:
            return problem(400, "the upload is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            return problem(413, f"uploads are limited to {MAX_UPLOAD_BYTES} bytes")
        source = decode(data) if content_type.startswith(("image/", "application/")) else None
        if source is None:
            return problem(415, "only images can be uploaded here")
        blob_id = f"{secrets.token_hex(12)}.{_EXTENSIONS[source.fmt]}"
        sim.blobs.add(
            BlobRecord(
                blob_id,
                source.width,
                source.height,
                source.fmt,
                data=data,
                nsfw_level=sim.upload_nsfw_level,
            )
        )
        sim.uploads.append(blob_id)
        return json_response(201, upload_json(sim.blobs, blob_id))

    async def refresh(self, request: web.Request) -> web.Response:
        """RefreshBlob: the Blob again with a freshly signed URL."""
        sim = self.sim
        if (early := sim.gate(request, "refresh")) is not None:
            return early
        found = sim.locate(request.match_info["id"])
        if found is None or found[1] == "pending":
            return problem(404, "blob not found")
        record = found[0]
        if record.owner is None:
            return json_response(200, upload_json(sim.blobs, record.id))
        wf, step, index = sim.owner(record)
        return json_response(200, blob_json(sim.blobs, wf, step, index, time.monotonic()))

    async def _bytes(self, record: BlobRecord) -> bytes:
        blobs = self.sim.blobs
        data = blobs.cached(record)
        if data is None:
            if (record.width or 0) * (record.height or 0) > DRAW_IN_THREAD_PIXELS:
                data = await asyncio.to_thread(blobs.draw, record)
            else:
                data = blobs.draw(record)
            blobs.remember(record, data)
        return data


async def _read_upload(request: web.Request) -> tuple[bytes, str]:
    """The uploaded bytes and their declared type: the body, or a multipart form's first file."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.filename:
                declared = part.headers.get("Content-Type", "application/octet-stream")
                return bytes(await part.read()), declared
        return b"", ""
    return await request.read(), request.content_type
