"""The orchestrator's blob store, for OrchestratorClient: capped downloads of results, and
uploads of edit sources (UploadConsumerBlob) with RefreshBlob for a fresh signed URL.

Downloads and uploads are retried like API calls (429, 5xx, timeouts, connection errors). An
upload goes only to the orchestrator's own host (the client's base URL), so the bearer token
never leaves it; a download from another allowed blob host goes without the token.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from bot import net
from bot.civitai.errors import (
    BlobExpired,
    BlobHostRefused,
    BlobRefused,
    BlobTooLarge,
    OrchestratorError,
    Unavailable,
)
from bot.civitai.models import ImageBlob
from bot.civitai.shards import Shards
from bot.metrics import ERROR, OK, RETRY

log = logging.getLogger(__name__)

BLOBS = "/v2/consumer/blobs"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def retryable(status: int) -> bool:
    """Worth trying again: the statuses above, and any 5xx (a CDN in front answers 52x)."""
    return status in RETRYABLE_STATUS or status >= 500


# The largest source we upload; ours are re-encoded under media.max_source_bytes anyway.
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
# A whole blob download (redirects included) may take this many read timeouts: httpx's timeout
# is per read, so a store dripping a byte at a time would otherwise hold a delivery for ever.
WHOLE_BLOB_TIMEOUTS = 4


class BlobCalls:
    """The blob half of OrchestratorClient (a mixin: it uses the client's pools and retries)."""

    base_url: str
    blob_hosts: list[str]
    max_blob_bytes: int
    max_retries: int
    timeout: float
    stats: Counter[str]
    _sleep: Callable[[float], Awaitable[None]]
    _rng: random.Random
    _shards: Shards
    _request: Callable[..., Awaitable[Any]]
    _attempt: Callable[[str, str, float], None]
    _backoff: Callable[[int, float | None], float]

    async def upload_blob(self, data: bytes, mime: str) -> ImageBlob:
        """UploadConsumerBlob: the bytes as the body; the Blob (id, signed URL) it became.

        A refusal (too large, not an image, moderation, any other 4xx) is BlobRefused; what
        outlasts the retries is Unavailable.
        """
        if len(data) > MAX_UPLOAD_BYTES:
            raise BlobRefused(f"{len(data):,} bytes is over the {MAX_UPLOAD_BYTES:,} upload cap")
        try:
            blob = await self._request(
                "upload",
                "POST",
                BLOBS,
                content=data,
                headers={"Content-Type": mime},
                answer=ImageBlob,
            )
        except (BlobRefused, Unavailable):
            raise
        except OrchestratorError as exc:
            raise BlobRefused(f"upload refused: {exc}") from None
        if not blob.url:
            raise BlobRefused(f"upload {blob.id} came back without a URL")
        return blob

    async def refresh_blob(self, blob_id: str) -> ImageBlob:
        """RefreshBlob: a freshly signed URL (and the blob's lifetime reset). NotFound when the
        blob is gone."""
        return await self._request(
            "refresh", "POST", f"{BLOBS}/{blob_id}/refresh", answer=ImageBlob
        )

    async def download_blob(self, url: str, *, max_bytes: int | None = None) -> bytes:
        """Stream a blob from an allowed host, refusing it as soon as it passes the cap.

        5xx, 429, timeouts and connection errors are retried like API calls; an expired or
        unknown signed URL (403/404) is BlobExpired, for the caller to fetch a fresh URL.
        """
        cap = max_bytes or self.max_blob_bytes
        attempt = 0
        while True:
            retry_after: float | None = None
            started = time.monotonic()
            deadline = self.timeout * WHOLE_BLOB_TIMEOUTS
            try:
                async with asyncio.timeout(deadline):
                    data = await self._fetch_blob(url, cap)
            except _Retryable as exc:
                problem, retry_after = exc.problem, exc.retry_after
            except TimeoutError:
                problem = f"blob: not whole within {deadline:.0f}s"
            # DecodingError: a body whose gzip/deflate is broken (not a TransportError).
            except (httpx.TimeoutException, httpx.TransportError, httpx.DecodingError) as exc:
                problem = f"blob: lost the blob store's answer ({type(exc).__name__})"
            except BlobExpired:
                # Routine: the caller asks for a fresh URL and tries again (not an error to
                # alert on; ImagebotOrchestratorErrors reads outcome="error").
                self._attempt("blob", RETRY, started)
                raise
            except OrchestratorError:
                self._attempt("blob", ERROR, started)
                raise
            else:
                self._attempt("blob", OK, started)
                return data
            self._attempt("blob", ERROR if attempt >= self.max_retries else RETRY, started)
            if attempt >= self.max_retries:
                raise Unavailable(f"{problem}; gave up after {attempt + 1} tries")
            delay = self._backoff(attempt, retry_after)
            log.warning("%s; retrying in %.1fs (try %d)", problem, delay, attempt + 2)
            await self._sleep(delay)
            attempt += 1

    async def _fetch_blob(self, url: str, cap: int) -> bytes:
        for _ in range(3):  # a GetBlob URL redirects once to the content URL
            self._check_blob_url(url)
            self.stats["blob"] += 1
            with self._shards.use() as http:
                fetched = await self._fetch_once(http, url, cap)
            if isinstance(fetched, bytes):
                return fetched
            url = fetched
        raise BlobRefused("too many redirects fetching a blob")

    async def _fetch_once(self, http: httpx.AsyncClient, url: str, cap: int) -> bytes | str:
        """The blob's bytes, or where it redirects to."""
        request = http.build_request("GET", url, timeout=self.timeout)
        if not self._same_host(url):
            # Blob URLs are signed; our bearer token must not travel to another host.
            request.headers.pop("Authorization", None)
        response = await http.send(request, stream=True)
        try:
            if response.is_redirect and "location" in response.headers:
                return str(response.url.join(response.headers["location"]))
            status = response.status_code
            if retryable(status):
                raise _Retryable(
                    f"blob: the blob store answered {status}",
                    net.retry_after(response.headers.get("retry-after")),
                )
            if status in (403, 404, 410):
                raise BlobExpired(f"blob URL refused ({status}): expired or unknown")
            if status != 200:
                # One failed fetch (the delivery tries again until its deadline), not an error
                # of the API: nothing else here names it.
                detail = (await _body_text(response)).strip()[:300]
                raise BlobRefused(f"the blob store answered {status}: {detail}")
            return await _read_capped(response, cap)
        finally:
            await response.aclose()

    def blob_url_problem(self, url: str) -> str | None:
        """Why downloads refuse this URL (its host not allowed, not https), None if they
        do not."""
        try:
            self._check_blob_url(url)
        except BlobHostRefused as exc:
            return str(exc)
        return None

    def _same_host(self, url: str) -> bool:
        return urlsplit(url).netloc.lower() == urlsplit(self.base_url).netloc.lower()

    def _check_blob_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        # Plain http only on loopback (the simulator): the bearer token goes to our own host.
        if parts.scheme != "https" and not net.is_loopback(host):
            raise BlobHostRefused(f"blob URL must be https: {parts.scheme}://{host}")
        if self._same_host(url):
            return
        for pattern in self.blob_hosts:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return
        raise BlobHostRefused(f"blob host {host!r} is not an orchestrator blob host")


class _Retryable(Exception):
    """A blob answer worth trying again (5xx, 429)."""

    def __init__(self, problem: str, retry_after: float | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


async def _body_text(response: httpx.Response) -> str:
    data = await _read_capped(response, 64 * 1024, refuse=False)
    return data[:2000].decode("utf-8", "replace")


async def _read_capped(response: httpx.Response, cap: int, *, refuse: bool = True) -> bytes:
    declared = response.headers.get("content-length")
    if refuse and declared and declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise BlobTooLarge(f"blob is {int(declared):,} bytes, over the {cap:,} byte cap")
    data, over = await net.read_capped(response.aiter_bytes(), cap)
    if over and refuse:
        raise BlobTooLarge(f"blob is over the {cap:,} byte cap")
    return data
