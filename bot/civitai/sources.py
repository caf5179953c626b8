"""Edit sources as the orchestrator gets them: each stored source is uploaded once to its blob
store and the step names it by URL, so a submit (and every re-roll of it) sends a few hundred
bytes of JSON instead of megabytes of Base64.

The uploads are remembered by the SHA-256 of the bytes (bot.store.source_blobs): a re-roll, or
a resubmit after a restart, reuses the URL while it stays valid for the job's whole deadline,
asks RefreshBlob for a fresh one when it would not, and uploads the stored bytes again when the
blob is gone (expired upstream, 404). When the blob store will not take a source (refused,
unreachable after the client's retries), that source goes inline as a data URL, as before; so
do all of a job's sources when the orchestrator refuses its submit over their URLs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import NotFound, OrchestratorError
from bot.civitai.models import ImageBlob
from bot.store.jobs import SOURCE_REF, JobRecord, JobStore, SourceImage
from bot.store.source_blobs import SourceBlob, SourceBlobStore

log = logging.getLogger(__name__)

# Hashing or Base64-encoding more than this goes to a thread, off the event loop.
INLINE_WORK_BYTES = 256 * 1024
# The step fields that carry sources, as a 400's field paths name them.
SOURCE_FIELD = re.compile(r"\binput\.(images|image|mask|maskImage)\b")


def data_url(source: SourceImage) -> str:
    return f"data:{source.mime};base64,{base64.b64encode(source.data).decode()}"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class InlineFallback:
    """Which jobs' last step named its images by blob URL, and which send them inline from now
    on: a blob lost upstream (still listed, its URL refused) is sent as bytes, once."""

    def __init__(self) -> None:
        self._by_url: set[str] = set()
        self._inline: set[str] = set()

    def refused(self, job: JobRecord, fields: Iterable[str]) -> bool:
        """The orchestrator refused the job's submit naming its source fields: if they went by
        URL (a blob lost upstream before its URL expired), they go inline next time, once.
        True when that is worth another try."""
        if job.id in self._inline or job.id not in self._by_url:
            return False
        if not any(SOURCE_FIELD.search(field) for field in fields):
            return False
        self._inline.add(job.id)
        return True

    def forget(self, job_id: str) -> None:
        """The job's task has ended."""
        self._by_url.discard(job_id)
        self._inline.discard(job_id)


class SourceUploads(InlineFallback):
    def __init__(
        self,
        client: OrchestratorClient,
        jobs: JobStore,
        blobs: SourceBlobStore,
        *,
        deadline: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__()
        self.client, self.jobs, self.blobs = client, jobs, blobs
        # A URL must stay valid for as long as a job may wait upstream before reading it.
        self.deadline, self.clock = deadline, clock
        # One upload at a time per source: two re-rolls of one edit share it.
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    async def step(self, job: JobRecord) -> dict[str, Any]:
        """The job's stored step with each source://N replaced by how the source is sent."""
        if SOURCE_REF not in json.dumps(job.step):
            return job.step
        sources = await self.jobs.sources(job.id)
        wanted = sorted(set(_refs(job.step)))
        if job.id in self._inline:
            sent = {index: await _off_loop(data_url, sources[index]) for index in wanted}
        else:
            sent = {index: await self.reference(job.id, sources[index]) for index in wanted}
        if any(not url.startswith("data:") for url in sent.values()):
            self._by_url.add(job.id)

        def resolve(value: Any) -> Any:
            if isinstance(value, str) and value.startswith(SOURCE_REF):
                return sent[int(value[len(SOURCE_REF) :])]
            if isinstance(value, list):
                return [resolve(v) for v in value]
            if isinstance(value, dict):
                return {k: resolve(v) for k, v in value.items()}
            return value

        return resolve(job.step)

    async def reference(self, job_id: str, source: SourceImage) -> str:
        """The URL of the source's blob (uploaded now if need be), else its data URL."""
        key = await _off_loop(digest, source.data)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                blob = await self._blob(job_id, key, source)
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
        if blob is not None:
            return blob.url
        return await _off_loop(data_url, source)

    async def _blob(self, job_id: str, key: str, source: SourceImage) -> SourceBlob | None:
        client = self.client
        known = await self.blobs.blob(key)
        if known is not None and self._valid(known):
            return known
        if known is not None:
            try:
                return await self._remember(key, await client.refresh_blob(known.blob_id))
            except NotFound:
                log.info(
                    "job %s: uploaded source %s is gone upstream; uploading it again",
                    job_id,
                    known.blob_id,
                )
            except OrchestratorError as exc:
                log.warning("job %s: source %s not refreshed (%s)", job_id, known.blob_id, exc)
        try:
            uploaded = await client.upload_blob(source.data, source.mime)
        except OrchestratorError as exc:
            log.warning("job %s: source not uploaded (%s); sending it inline", job_id, exc)
            if known is not None:
                await self.blobs.forget(key)
            return None
        return await self._remember(key, uploaded)

    def _valid(self, known: SourceBlob) -> bool:
        """Still usable for as long as a job may wait upstream before it reads its sources."""
        if known.url_expires_at is None:
            return True
        return known.url_expires_at - self.clock() >= self.deadline

    async def _remember(self, key: str, blob: ImageBlob) -> SourceBlob:
        if not blob.url:
            raise OrchestratorError(f"blob {blob.id} came back without a URL")
        return await self.blobs.remember(
            key, blob.id, blob.url, blob.url_expires_at, blob.nsfw_level
        )


async def rated_upload(
    client: OrchestratorClient, blobs: SourceBlobStore, data: bytes, mime: str
) -> str | None:
    """The orchestrator's rating of a source (its moderation at upload), uploading it only if
    these bytes were never rated; the upload is remembered, so the job's submit (and every
    re-roll) sends its URL instead of uploading the bytes again."""
    key = await _off_loop(digest, data)
    known = await blobs.blob(key)
    if known is not None and known.nsfw_level is not None:
        return known.nsfw_level
    blob = await client.upload_blob(data, mime)
    if blob.url:
        await blobs.remember(key, blob.id, blob.url, blob.url_expires_at, blob.nsfw_level)
    return blob.nsfw_level


def _refs(value: Any) -> list[int]:
    if isinstance(value, str) and value.startswith(SOURCE_REF):
        return [int(value[len(SOURCE_REF) :])]
    if isinstance(value, list):
        return [i for v in value for i in _refs(v)]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _refs(v)]
    return []


async def _off_loop(fn: Any, arg: Any) -> Any:
    size = len(arg.data) if isinstance(arg, SourceImage) else len(arg)
    if size <= INLINE_WORK_BYTES:
        return fn(arg)
    return await asyncio.to_thread(fn, arg)
