"""Review items, strikes and bans: the moderators' records, one guild at a time (bans and
strikes in bot/store/sanctions.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.store import audit
from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import row as fetch_row
from bot.store.review_messages import ReviewMessages
from bot.store.sanctions import Sanctions

# Where an item came from when its kind alone says (a held item may also come from the AI
# pre-moderation: its creator names it).
SOURCE_OF_KIND = {
    "held": "filter",
    "blocked": "orchestrator",
    "undelivered": "delivery",
    "mature": "mature",
}
SOURCES = ("filter", "premoderation", "orchestrator", "mature", "delivery")


class AlreadyHandled(Exception):
    def __init__(self, item: ReviewItem) -> None:
        self.item = item
        who = f"<@{item.handled_by}>" if item.handled_by else "someone"
        super().__init__(f"Already handled by {who} ({item.status})")


# A release recorded, never posted (the process died), is resumed at start within this long.
RESUME_RELEASES_WITHIN = timedelta(days=1)
# Of review item `i`: its latest release decision's audit row; released, not posted since.
_RELEASE_DECISION = (
    "SELECT MAX(id) FROM audit_events"
    " WHERE target = 'review:' || i.id AND action IN ('review.release', 'review.dm')"
)
UNPOSTED_RELEASE = (
    "i.status = 'released' AND i.handled_at >= ? AND NOT EXISTS (SELECT 1 FROM audit_events p"
    " WHERE p.target = 'review:' || i.id AND p.action = 'review.released'"
    f" AND p.id > ({_RELEASE_DECISION}))"
)


@dataclass(frozen=True)
class ReviewItem:
    id: int
    guild_id: int
    job_id: str
    kind: str  # blocked | held | undelivered | mature
    reason: str | None
    status: str
    handled_by: int | None
    handled_at: datetime | None
    note: str | None
    message_channel_id: int | None
    message_id: int | None
    appeal_note: str | None
    appealed_at: datetime | None
    created_at: datetime
    # What Refund gives back; None means everything the job cost.
    refund_amount: int | None = None
    # Why it is in the queue: filter, premoderation, orchestrator, mature or delivery; and
    # what moderators need to see about it (labels and scores, a rating...). Never members.
    source: str = "filter"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.status == "open"


@dataclass(frozen=True)
class ItemEvent:
    """Something done to a review item (a decision, a sanction, an appeal), from the audit."""

    action: str
    actor_id: int | None
    at: datetime
    details: dict[str, Any]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _item(row: sqlite3.Row) -> ReviewItem:
    return ReviewItem(
        row["id"],
        row["guild_id"],
        row["job_id"],
        row["kind"],
        row["reason"],
        row["status"],
        row["handled_by"],
        _time(row["handled_at"]),
        row["note"],
        row["message_channel_id"],
        row["message_id"],
        row["appeal_note"],
        _time(row["appealed_at"]),
        datetime.fromisoformat(row["created_at"]),
        row["refund_amount"],
        row["source"],
        json.loads(row["details"] or "{}"),
    )


class ModerationStore(ReviewMessages, Sanctions):
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    # -- review items -----------------------------------------------------------------------
    def create_item_in(
        self,
        tx: Conn,
        guild_id: int,
        job_id: str,
        kind: str,
        reason: str | None,
        *,
        refund_amount: int | None = None,
        source: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        cursor = tx.execute(
            "INSERT INTO review_items (guild_id, job_id, kind, reason, refund_amount, source,"
            " details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                guild_id,
                job_id,
                kind,
                reason,
                refund_amount,
                source or SOURCE_OF_KIND[kind],
                json.dumps(details or {}, default=str),
                iso(self.clock()),
            ),
        )
        return int(cursor.lastrowid or 0)

    def item_in(self, conn: Conn, item_id: int) -> ReviewItem | None:
        row = fetch_row(conn, "SELECT * FROM review_items WHERE id = ?", (item_id,))
        return _item(row) if row else None

    async def item(self, item_id: int) -> ReviewItem | None:
        return await self.db.read(self.item_in, item_id)

    async def item_for_job(self, job_id: str) -> ReviewItem | None:
        """The job's latest review item (a job may have had several over its life)."""
        return await self.db.read(self.item_for_job_in, job_id)

    async def open_items(
        self, guild_id: int, limit: int = 25, *, source: str | None = None
    ) -> list[ReviewItem]:
        """Open items, oldest first; only those from `source` when it is given."""
        sql = "SELECT * FROM review_items WHERE guild_id = ? AND status = 'open'"
        params: list[Any] = [guild_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        rows = await self.db.fetchall(f"{sql} ORDER BY id LIMIT ?", (*params, limit))
        return [_item(r) for r in rows]

    async def open_items_of_member(self, guild_id: int, member_id: int) -> list[ReviewItem]:
        """The member's open items that have a message (their cards show the member's strikes)."""
        rows = await self.db.fetchall(
            "SELECT i.* FROM review_items i JOIN jobs j ON j.id = i.job_id"
            " WHERE i.guild_id = ? AND j.member_id = ? AND i.status = 'open'"
            " AND i.message_id IS NOT NULL ORDER BY i.id",
            (guild_id, member_id),
        )
        return [_item(r) for r in rows]

    async def posted_releases(self, job_ids: list[str]) -> dict[str, tuple[int | None, list[int]]]:
        """Of these jobs, those whose kept-back result a moderator released and the bot posted:
        where it went (the release channel, None for the member's DMs) and its messages."""
        if not job_ids:
            return {}
        marks = ", ".join("?" * len(job_ids))
        rows = await self.db.fetchall(
            "SELECT i.job_id, p.details FROM review_items i JOIN audit_events p"
            " ON p.target = 'review:' || i.id AND p.action = 'review.released'"
            f" WHERE i.status = 'released' AND i.job_id IN ({marks}) ORDER BY p.id",
            job_ids,
        )
        found = {}
        for r in rows:
            details = json.loads(r["details"])
            found[r["job_id"]] = (details.get("channel"), list(details.get("messages") or []))
        return found

    async def count_open(self, guild_id: int, *, source: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM review_items WHERE guild_id = ? AND status = 'open'"
        params: list[Any] = [guild_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        found = await self.db.fetchone(sql, params)
        return int(found[0]) if found else 0

    def close_item_in(
        self, tx: Conn, item_id: int, status: str, actor_id: int, note: str | None = None
    ) -> ReviewItem:
        """Settle an open item once; a second moderator gets AlreadyHandled naming the first."""
        cursor = tx.execute(
            "UPDATE review_items SET status = ?, handled_by = ?, handled_at = ?, note = ?"
            " WHERE id = ? AND status = 'open'",
            (status, actor_id, iso(self.clock()), note, item_id),
        )
        item = self.item_in(tx, item_id)
        if item is None:
            raise KeyError(item_id)
        if cursor.rowcount != 1:
            raise AlreadyHandled(item)
        return item

    def reopen_item_in(self, tx: Conn, item_id: int, note: str) -> ReviewItem:
        """Undo a closing decision that could not be carried out (a release that failed)."""
        tx.execute(
            "UPDATE review_items SET status = 'open', handled_by = NULL, handled_at = NULL,"
            " note = ? WHERE id = ?",
            (note, item_id),
        )
        item = self.item_in(tx, item_id)
        assert item is not None
        return item

    def set_item_message_in(
        self, tx: Conn, item_id: int, channel_id: int | None, message_id: int | None
    ) -> None:
        tx.execute(
            "UPDATE review_items SET message_channel_id = ?, message_id = ? WHERE id = ?",
            (channel_id, message_id, item_id),
        )

    def appeal_in(self, tx: Conn, item_id: int, note: str) -> ReviewItem:
        tx.execute(
            "UPDATE review_items SET appeal_note = ?, appealed_at = ? WHERE id = ?",
            (note, iso(self.clock()), item_id),
        )
        item = self.item_in(tx, item_id)
        assert item is not None
        return item

    async def set_item_message(self, item_id: int, channel_id: int, message_id: int) -> None:
        await self.db.write(self.set_item_message_in, item_id, channel_id, message_id)

    async def item_events(self, item_id: int) -> list[ItemEvent]:
        """What was done to an item, oldest first."""
        found = await audit.events(self.db, target=f"review:{item_id}", oldest_first=True)
        return [
            ItemEvent(
                e.action.removeprefix("review."),
                e.actor_id,
                datetime.fromisoformat(e.created_at),
                e.details,
            )
            for e in found
        ]

    def open_item_for_job_in(self, conn: Conn, job_id: str) -> ReviewItem | None:
        row = fetch_row(
            conn, "SELECT * FROM review_items WHERE job_id = ? AND status = 'open'", (job_id,)
        )
        return _item(row) if row else None

    def item_for_job_in(self, conn: Conn, job_id: str) -> ReviewItem | None:
        """The job's latest review item."""
        row = fetch_row(
            conn, "SELECT * FROM review_items WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,)
        )
        return _item(row) if row else None

    def strike_giver_in(self, conn: Conn, item_id: int) -> int | None:
        """Who gave the strike for this review item, if anyone (a strike is given once)."""
        row = fetch_row(conn, "SELECT actor_id FROM strikes WHERE review_item_id = ?", (item_id,))
        return None if row is None else int(row[0] or 0)

    def ban_giver_in(self, conn: Conn, item_id: int) -> int | None:
        """Who banned the member for this review item, if anyone (once per item)."""
        row = fetch_row(conn, "SELECT actor_id FROM bans WHERE review_item_id = ?", (item_id,))
        return None if row is None else int(row[0] or 0)

    async def unposted_releases(self, since: datetime) -> list[tuple[ReviewItem, int | None]]:
        """Items released since `since` whose images were never posted (the process died
        between recording the decision and posting): each with where it goes (None: the
        member's DMs), from the decision's audit row."""
        rows = await self.db.fetchall(
            "SELECT i.*, json_extract(d.details, '$.channel') AS release_to"
            f" FROM review_items i JOIN audit_events d ON d.id = ({_RELEASE_DECISION})"
            f" WHERE {UNPOSTED_RELEASE} ORDER BY i.id",
            (iso(since),),
        )
        return [(_item(r), r["release_to"]) for r in rows]

    async def items_without_message(
        self, guild_id: int | None = None, *, outside: int | None = None
    ) -> list[ReviewItem]:
        """Open items with no message; with `outside`, also those whose message is in another
        channel than that one (a moderation channel moved, or deleted)."""
        sql = "SELECT * FROM review_items WHERE status = 'open' AND (message_id IS NULL"
        params: list[Any] = []
        if outside is not None:
            sql += " OR message_channel_id IS NOT ?"
            params.append(outside)
        sql += ")"
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        return [_item(r) for r in await self.db.fetchall(f"{sql} ORDER BY id", params)]
