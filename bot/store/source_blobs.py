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
    # The orchestrator's rating of the bytes (None: not given).
    nsfw_level: str | None = None


class SourceBlobStore:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def blob(self, digest: str) -> SourceBlob | None:
        found = await self.db.fetchone(
            "SELECT digest, blob_id, url, url_expires_at, renewed_at, nsfw_level FROM source_blobs"
            " WHERE digest = ?",
            (digest,),
        )
        if found is None:
            return None
        expires = datetime.fromisoformat(found[3]) if found[3] else None
        renewed = datetime.fromisoformat(found[4])
        return SourceBlob(found[0], found[1], found[2], expires, renewed, found[5])

    async def remember(
        self,
        digest: str,
        blob_id: str,
        url: str,
        url_expires_at: datetime | None,
        nsfw_level: str | None = None,
    ) -> SourceBlob:
        return await self.db.write(
            self.remember_in, digest, blob_id, url, url_expires_at, nsfw_level
        )

    def remember_in(
        self,
        tx: Conn,
        digest: str,
        blob_id: str,
        url: str,
        url_expires_at: datetime | None,
        nsfw_level: str | None = None,
    ) -> SourceBlob:
        now = self.clock()
        expires = iso(url_expires_at) if url_expires_at else None
        # A refresh may come back unrated: the bytes' earlier rating stands.
        found = tx.execute(
            "INSERT INTO source_blobs"
            " (digest, blob_id, url, url_expires_at, renewed_at, nsfw_level)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET"
            " blob_id = excluded.blob_id, url = excluded.url,"
            " url_expires_at = excluded.url_expires_at, renewed_at = excluded.renewed_at,"
            " nsfw_level = COALESCE(excluded.nsfw_level, source_blobs.nsfw_level)"
            " RETURNING nsfw_level",
            (digest, blob_id, url, expires, iso(now), nsfw_level),
        ).fetchone()
        return SourceBlob(digest, blob_id, url, url_expires_at, now, found[0])

    async def forget(self, digest: str) -> None:
        await self.db.write(self.forget_in, digest)

    def forget_in(self, tx: Conn, digest: str) -> None:
        tx.execute("DELETE FROM source_blobs WHERE digest = ?", (digest,))
