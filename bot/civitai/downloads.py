"""A finished workflow's images, fetched patiently: every image downloaded and decoded whole,
failures retried until the job's delivery deadline — an expired signed URL after
asking the orchestrator for the workflow again (fresh URLs)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import (
    BlobExpired,
    BlobHostRefused,
    BlobRefused,
    BlobTooLarge,
    NotFound,
    OrchestratorError,
    Unavailable,
)
from bot.civitai.models import Workflow
from bot.engine.publisher import ResultImage
from bot.media.decode import check_decodes
from bot.media.pool import ImagePool
from bot.metrics import Metrics
from bot.store.jobs import JobRecord

log = logging.getLogger(__name__)

# The operator alerts' keys (told once): results the bot may not download from their host,
# and results over the download cap.
BLOB_HOST_ALERT = "blob-host"
BLOB_SIZE_ALERT = "blob-size"


async def fetch_workflow_images(
    client: OrchestratorClient,
    job: JobRecord,
    workflow: Workflow | None,
    deadline: datetime,
    sleep: Callable[[float], Awaitable[None]],
    alert: Callable[[str, str], Awaitable[None]],
    *,
    backoff: Callable[[int, datetime], float],
    clock: Callable[[], datetime],
    metrics: Metrics,
    images: ImagePool,
    max_pixels: int,
) -> tuple[list[ResultImage], int]:
    """(the images fetched, in order; how many the workflow has). Each is decoded on `images`
    and held to `max_pixels`, as the OpenAI lane's results are. A download sent to a host the
    bot never fetches from (a redirect the workflow's URL does not show) is `alert`ed."""
    assert job.workflow_id is not None
    fetched: dict[int, ResultImage] = {}
    total = len(job.result_images)
    attempt = 0
    while True:
        if workflow is None:
            try:
                workflow = await client.get(job.workflow_id)
            except NotFound:
                log.warning("job %s: the orchestrator no longer has its workflow", job.id)
                break
            except OrchestratorError as exc:  # passing or not, asked again until the deadline
                log.warning("job %s: cannot get fresh image URLs: %s", job.id, exc)
        if workflow is not None:
            blobs = workflow.images()
            total = len(blobs)
            stale = False
            for index, blob in enumerate(blobs):
                if index in fetched:
                    continue
                try:
                    image = await _fetch_one(
                        client, job, index, blob.id, blob.url, images, max_pixels
                    )
                except (BlobHostRefused, BlobTooLarge) as exc:
                    # Refused on every try until the operator changes a setting: told now, and
                    # tried until the deadline (the fix may come, with a restart, in time).
                    log.warning("job %s: image %d not fetched: %s", job.id, index + 1, exc)
                    await alert(*_setting_alert(exc))
                    image = None
                if image is None:
                    stale = stale or not blob.url
                elif isinstance(image, ResultImage):
                    fetched[index] = image
                else:
                    stale = True
            if len(fetched) == total:
                break
            if stale:
                workflow = None  # ask for fresh URLs next time round
        metrics.delivery_failed()  # this round left images unfetched
        if clock() >= deadline:
            break
        delay = backoff(attempt, deadline)
        log.warning(
            "job %s: %d of %d image(s) not fetched yet; trying again in %.0fs",
            job.id,
            total - len(fetched),
            total,
            delay,
        )
        await sleep(delay)
        attempt += 1
    return [fetched[i] for i in sorted(fetched)], total


def refused_blobs(client: OrchestratorClient, workflow: Workflow) -> str | None:
    """What stops every download of this workflow's images (a host civitai.blob_hosts does not
    list): only the operator can fix it, so they are told when the job ends, not left to
    find each delivery failing at its deadline."""
    problems = {p for b in workflow.images() if b.url and (p := client.blob_url_problem(b.url))}
    return blob_host_advice(problems) if problems else None


def blob_host_advice(problems: set[str]) -> str:
    """The operator alert for downloads refused for their URL's host or scheme."""
    if all("must be https" in p for p in problems):  # no setting lets plain http through
        advice = "the orchestrator serves them over plain http, which the bot never downloads"
    else:
        advice = "add the host to civitai.blob_hosts (BOT_CIVITAI__BLOB_HOSTS) and restart"
    return f"results cannot be downloaded ({'; '.join(sorted(problems))}): {advice}"


def _setting_alert(refusal: BlobRefused) -> tuple[str, str]:
    """The operator alert (key, text) for a download only a setting change lets through."""
    if isinstance(refusal, BlobTooLarge):
        return BLOB_SIZE_ALERT, (
            f"results cannot be downloaded ({refusal}): raise civitai.max_blob_bytes "
            "(BOT_CIVITAI__MAX_BLOB_BYTES) and restart"
        )
    return BLOB_HOST_ALERT, blob_host_advice({str(refusal)})


async def _fetch_one(
    client: OrchestratorClient,
    job: JobRecord,
    index: int,
    blob_id: str,
    url: str | None,
    images: ImagePool,
    max_pixels: int,
) -> ResultImage | bool | None:
    """One image; None when it failed for now, False when its URL needs refreshing."""
    if not url:
        return None
    try:
        data = await client.download_blob(url)
    except BlobExpired:
        return False
    except (BlobHostRefused, BlobTooLarge):
        raise
    except (Unavailable, BlobRefused) as exc:
        log.warning("job %s: image %d not fetched: %s", job.id, index + 1, exc)
        return None
    try:
        # Decoded whole: a JPEG cut off mid-way (a close-delimited body that stopped early)
        # passes a structure check, and would be posted half grey and charged.
        mime, width, height = await images.run(check_decodes, data, max_pixels)
    except ValueError as exc:
        # A 200 whose body is not an image (an error page, a cut-off file): retried.
        log.warning("job %s: image %d is not a readable image (%s)", job.id, index + 1, exc)
        return None
    return ResultImage(index, blob_id, mime, width, height, data)
