"""A job's result images when they arrive in-band (bytes, not URLs): stored in the transaction
that settles the job, read back when the results are posted, deleted by retention."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.store.db import Conn, Database


@dataclass(frozen=True)
class StoredResult:
    index: int
    mime: str
    width: int | None
    height: int | None
    data: bytes = field(repr=False)


def put_in(tx: Conn, job_id: str, images: Iterable[StoredResult]) -> None:
    """Store (or replace) a job's result images, inside the caller's transaction."""
    tx.execute("DELETE FROM job_results WHERE job_id = ?", (job_id,))
    tx.executemany(
        "INSERT INTO job_results (job_id, idx, mime, width, height, data)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(job_id, i.index, i.mime, i.width, i.height, i.data) for i in images],
    )


async def load(db: Database, job_id: str) -> list[StoredResult]:
    found = await db.fetchall(
        "SELECT idx, mime, width, height, data FROM job_results WHERE job_id = ? ORDER BY idx",
        (job_id,),
    )
    return [StoredResult(r[0], r[1], r[2], r[3], bytes(r[4])) for r in found]
