"""Edit sources uploaded to the orchestrator's blob store: the blob id and signed URL of each
source's bytes (keyed by their SHA-256), so one upload serves every submit and re-roll."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Conn, Database, iso, utcnow


@dataclass(frozen=True)
class SourceBlob:
    digest: str
    blob_id: str
    url: str
    url_expires_at: datetime | None
    renewed_at: datetime


class SourceBlobStore:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def blob(self, digest: str) -> SourceBlob | None:
        found = await self.db.fetchone(
            "SELECT digest, blob_id, url, url_expires_at, renewed_at FROM source_blobs"
            " WHERE digest = ?",
            (digest,),
        )
        if found is None:
            return None
        expires = datetime.fromisoformat(found[3]) if found[3] else None
        return SourceBlob(found[0], found[1], found[2], expires, datetime.fromisoformat(found[4]))

    async def remember(
        self, digest: str, blob_id: str, url: str, url_expires_at: datetime | None
    ) -> SourceBlob:
        return await self.db.write(self.remember_in, digest, blob_id, url, url_expires_at)

    def remember_in(
        self, tx: Conn, digest: str, blob_id: str, url: str, url_expires_at: datetime | None
    ) -> SourceBlob:
        now = self.clock()
        tx.execute(
            "INSERT INTO source_blobs (digest, blob_id, url, url_expires_at, renewed_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET blob_id = excluded.blob_id,"
            " url = excluded.url, url_expires_at = excluded.url_expires_at,"
            " renewed_at = excluded.renewed_at",
            (digest, blob_id, url, iso(url_expires_at) if url_expires_at else None, iso(now)),
        )
        return SourceBlob(digest, blob_id, url, url_expires_at, now)

    async def forget(self, digest: str) -> None:
        await self.db.write(self.forget_in, digest)

    def forget_in(self, tx: Conn, digest: str) -> None:
        tx.execute("DELETE FROM source_blobs WHERE digest = ?", (digest,))
