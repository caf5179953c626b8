"""A posted result as the source of another step (an upscale, a cut-out).

A stored step names it `result://JOB/N` (bot.catalog.tools.result_ref): image N (0-based, in
workflow order) of job JOB. When the step is sent, the reference becomes the orchestrator's own
blob URL if a fresh one can be had (GetWorkflow signs new URLs) that stays valid long enough
for the job to read it; else the data URL of the bytes the bot posted (the job's stored
source 0). A whatif, made before the job is stored, can only use the blob URL: without one it
is skipped and the local estimate held. A blob URL the orchestrator refuses at submit (the blob
lost from its store, though the workflow still lists it) is replaced by the posted bytes on
the next try.

An upscale is sent only an image whose result the bot can decode and post (media.max_pixels):
the original only when the orchestrator says its size and its upscale fits, else the posted
copy (whose size the bot knows) if its upscale fits; else nothing is sent. A job held at the
local estimate (no whatif) was priced from the posted copy when the original's size is
unknown: it is sent that copy, not the larger original it was not priced for.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.catalog.tools import RESULT_REF, UPSCALE_FACTOR, parse_result_ref
from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import OrchestratorError
from bot.civitai.sources import InlineFallback
from bot.store.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

# A blob URL is used only if it stays valid this long: the job may wait in the queue first.
URL_MARGIN = timedelta(minutes=15)


class SourceUnavailable(Exception):
    """Neither a blob URL nor the posted bytes: the image cannot be sent."""


class ResultSources(InlineFallback):
    def __init__(
        self,
        client: OrchestratorClient,
        jobs: JobStore,
        clock: Callable[[], datetime],
        max_pixels: int,
    ) -> None:
        super().__init__()  # the posted bytes go once the blob URL was refused
        self.client, self.jobs, self.clock = client, jobs, clock
        self.max_pixels = max_pixels

    async def resolve(self, step: dict[str, Any], job: JobRecord | None) -> dict[str, Any]:
        """`step` with each result:// reference replaced by a blob URL, else (for a stored
        `job`) by the data URL of its source 0. Raises SourceUnavailable."""
        refs = refs_in(step, RESULT_REF)  # a walk, not a dump: a step may carry megabytes
        if not refs:
            return step
        factor = _growth(step)
        # Held at the local estimate (no usable whatif), the job was priced from the posted
        # copy when the original's size is unknown: that copy is what it is sent.
        sized = job is not None and not (job.whatif or 0) > 0
        inline = job is not None and job.id in self._inline
        sent: dict[str, str] = {}
        for ref in refs:
            parsed = parse_result_ref(ref)
            url = None
            if parsed and not inline:
                url = await self.blob_url(*parsed, growth=factor, sized=sized)
            if url and job is not None:
                self._by_url.add(job.id)
            sent[ref] = url or await self._posted(job, factor)

        resolved: dict[str, Any] = swap(step, sent)
        return resolved

    async def blob_url(
        self, job_id: str, index: int, *, growth: int = 1, sized: bool = False
    ) -> str | None:
        """A fresh URL of image `index` of the job's workflow, when there is one (and, for a
        step that makes it `growth` times larger each way, its known size allows it; with
        `sized`, only when its size is known)."""
        parent = await self.jobs.job(job_id)
        # With images missing from the post, its numbering is not the workflow's.
        if parent is None or not parent.workflow_id or parent.missing_images:
            return None
        try:
            workflow = await self.client.get(parent.workflow_id)
        except OrchestratorError as exc:
            log.info("job %s: no fresh URL for its image %d (%s)", job_id, index + 1, exc)
            return None
        images = workflow.images()
        if index >= len(images) or not images[index].url:
            return None
        blob = images[index]
        if sized and not (blob.width and blob.height):
            return None
        if growth > 1 and self._over(blob.width or 0, blob.height or 0, growth) is not None:
            return None
        expires = blob.url_expires_at
        if expires is not None and expires - self.clock() < URL_MARGIN:
            return None
        return blob.url

    def _over(self, width: int, height: int, growth: int) -> str | None:
        """Why a source this size cannot be sent (None: it can); an unknown size cannot."""
        if not width or not height:
            return "the source image's size is unknown"
        width, height = width * growth, height * growth
        if width * height <= self.max_pixels:
            return None
        return (
            f"the result would be {width}x{height}, over the "
            f"{self.max_pixels // 1_000_000:,} megapixels this bot can post"
        )

    async def _posted(self, job: JobRecord | None, growth: int = 1) -> str:
        sources = await self.jobs.sources(job.id) if job is not None else []
        if not sources:
            raise SourceUnavailable("the source image is no longer available")
        source = sources[0]
        over = self._over(source.width, source.height, growth) if growth > 1 else None
        if over is not None:
            # Charged upstream, such a result could never be decoded and posted here.
            raise SourceUnavailable(over)
        return f"data:{source.mime};base64,{base64.b64encode(source.data).decode()}"


def _growth(step: dict[str, Any]) -> int:
    """How many times larger each way the step makes its source (an upscale's doublings)."""
    if step.get("$type") != "imageUpscaler":
        return 1
    return int(UPSCALE_FACTOR ** int(step.get("input", {}).get("numberOfRepeats") or 1))


def refs_in(value: Any, prefix: str) -> list[str]:
    """Every string in a step that starts with `prefix` (result://, source://)."""
    if isinstance(value, str):
        return [value] if value.startswith(prefix) else []
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v, prefix)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in refs_in(v, prefix)]
    return []


def swap(value: Any, sent: dict[str, str]) -> Any:
    """`value` with each string that is a key of `sent` replaced by its value."""
    if isinstance(value, str) and value in sent:
        return sent[value]
    if isinstance(value, list):
        return [swap(v, sent) for v in value]
    if isinstance(value, dict):
        return {k: swap(v, sent) for k, v in value.items()}
    return value
