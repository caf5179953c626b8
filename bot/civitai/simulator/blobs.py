"""Blobs: what each id holds, signed expiring content URLs, and a cache of drawn images."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.civitai.simulator.steps import Render

log = logging.getLogger(__name__)

# Drawn images kept for re-downloads (the bot fetches each blob once; a source twice).
CACHE_SIZE = 64
CONTENT_PATH = "/v2/consumer/blobs/content/"
BLOB_PATH = "/v2/consumer/blobs/"


@dataclass
class BlobRecord:
    """One blob: a workflow's output (drawn on first download) or an upload (its bytes)."""

    id: str
    width: int | None
    height: int | None
    fmt: str
    render: Render | None = None
    data: bytes | None = None
    nsfw_level: str = "pg"
    # Where a workflow output comes from: (workflow id, step index, index in the step).
    owner: tuple[str, int, int] | None = None


class BlobStore:
    def __init__(self, *, ttl: float, max_image_side: int | None = None) -> None:
        self.ttl = ttl
        self.max_image_side = max_image_side
        self.base_url = ""
        # Where workflows list their output blobs: GetBlob URLs at this base, which redirect to
        # the signed content (as a CDN in front may); None: the content URLs themselves.
        self.listed_base: str | None = None
        self._key = secrets.token_bytes(32)
        self._records: dict[str, BlobRecord] = {}
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    def add(self, record: BlobRecord) -> None:
        self._records[record.id] = record

    def get(self, blob_id: str) -> BlobRecord | None:
        return self._records.get(blob_id)

    def lose(self, blob_id: str) -> None:
        """The store no longer has it (tests: a blob lost upstream); its URLs stop loading."""
        self._records.pop(blob_id, None)

    # -- content -----------------------------------------------------------------------------
    def cached(self, record: BlobRecord) -> bytes | None:
        if record.data is not None:
            return record.data
        data = self._cache.get(record.id)
        if data is not None:
            self._cache.move_to_end(record.id)
        return data

    def remember(self, record: BlobRecord, data: bytes) -> None:
        self._cache[record.id] = data
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def draw(self, record: BlobRecord) -> bytes:
        """Draw a workflow output (slow for large images: callers may run it in a thread)."""
        assert record.render is not None and record.width and record.height
        width, height = record.width, record.height
        if self.max_image_side:
            # Load tests cap the placeholder images so rendering does not dominate the run.
            scale = min(1.0, self.max_image_side / max(width, height))
            width, height = max(1, int(width * scale)), max(1, int(height * scale))
        return record.render(width, height)

    def content(self, record: BlobRecord) -> bytes:
        data = self.cached(record)
        if data is None:
            data = self.draw(record)
            self.remember(record, data)
        return data

    # -- signed URLs -------------------------------------------------------------------------
    def content_url(self, blob_id: str) -> tuple[str, datetime]:
        expires = int(time.time() + self.ttl)
        # A nonce makes every signing a new URL (RefreshBlob's answer differs from the last).
        text = f"{blob_id}.{expires}.{secrets.token_hex(4)}"
        payload = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        url = f"{self.base_url}{CONTENT_PATH}{payload}.{self._mac(payload)}"
        return url, datetime.fromtimestamp(expires, UTC)

    def listed_url(self, blob_id: str) -> tuple[str, datetime]:
        """A workflow output's URL as the workflow lists it (see `listed_base`)."""
        url, expires = self.content_url(blob_id)
        if self.listed_base:
            url = f"{self.listed_base}{BLOB_PATH}{blob_id}"
        return url, expires

    def verify(self, token: str) -> str | None:
        """The blob id a content token names, if it is genuine and unexpired."""
        payload, _, mac = token.rpartition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        signed, _, _nonce = text.rpartition(".")
        blob_id, _, expires = signed.rpartition(".")
        return blob_id if expires.isdigit() and int(expires) >= time.time() else None

    def blob_id_of(self, url: str) -> str | None:
        """The blob a URL of this simulator points at: a content URL (verified) or GetBlob's."""
        if not self.base_url or not url.startswith(self.base_url):
            return None
        path = url[len(self.base_url) :].split("?", 1)[0]
        if path.startswith(CONTENT_PATH):
            return self.verify(path[len(CONTENT_PATH) :])
        if path.startswith(BLOB_PATH):
            return path[len(BLOB_PATH) :].split("/", 1)[0] or None
        return None

    def sign_upload(self) -> tuple[str, datetime]:
        """A presigned upload URL: POST /v2/consumer/blobs without a token."""
        expires = int(time.time() + self.ttl)
        sig = self._mac(f"upload.{expires}")
        url = f"{self.base_url}{BLOB_PATH.rstrip('/')}?exp={expires}&sig={sig}"
        return url, datetime.fromtimestamp(expires, UTC)

    def verify_upload(self, exp: str, sig: str) -> bool:
        if not exp.isdigit() or int(exp) < time.time():
            return False
        return hmac.compare_digest(sig, self._mac(f"upload.{exp}"))

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:24]
