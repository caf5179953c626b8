"""Questions the bot asked a member (a confirmation, offers, a tool's confirmation), kept until
answered or expired: a click after a restart finds them, and the first click wins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.store.db import Conn, Database, iso, rows, utcnow
from bot.store.db import row as fetch_row

# Answered and expired questions are kept this long (a late click is told which it was).
KEPT = timedelta(days=1)


class QuestionState(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    EXPIRED = "expired"


@dataclass(frozen=True)
class NewQuestion:
    id: str
    kind: str
    member_id: int
    payload: bytes
    size: int
    expires_at: datetime
    application_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: datetime | None = None


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    member_id: int
    state: QuestionState
    expires_at: datetime
    payload: bytes | None


@dataclass(frozen=True)
class Shown:
    """Where an expired question was shown, to say there that it expired."""

    id: str
    kind: str
    application_id: int | None
    interaction_token: str | None
    token_expires_at: datetime | None
    message_id: int | None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Questions:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.clock = db, clock

    async def ask(self, question: NewQuestion, per_member: int, per_member_bytes: int) -> None:
        """Keep `question`; the member's oldest open ones of its kind expire now when they
        would hold more than `per_member` questions or `per_member_bytes` bytes."""
        await self.db.write(self._ask_in, question, per_member, per_member_bytes)

    def _ask_in(self, tx: Conn, q: NewQuestion, per_member: int, per_member_bytes: int) -> None:
        now = iso(self.clock())
        theirs = rows(
            tx,
            "SELECT id, size FROM questions WHERE member_id = ? AND kind = ? AND state = 'open'"
            " AND expires_at > ? ORDER BY created_at, rowid",
            (q.member_id, q.kind, now),
        )
        held = sum(r["size"] for r in theirs) + q.size
        # The newest question is always kept.
        while theirs and (len(theirs) >= per_member or held > per_member_bytes):
            oldest = theirs.pop(0)
            tx.execute("UPDATE questions SET expires_at = ? WHERE id = ?", (now, oldest["id"]))
            held -= oldest["size"]
        tx.execute(
            "INSERT INTO questions (id, kind, member_id, payload, size, created_at, expires_at,"
            " application_id, interaction_token, token_expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                q.id,
                q.kind,
                q.member_id,
                q.payload,
                q.size,
                now,
                iso(q.expires_at),
                q.application_id,
                q.interaction_token,
                iso(q.token_expires_at) if q.token_expires_at else None,
            ),
        )

    async def posted(self, question_id: str, message_id: int) -> None:
        """The question was sent as a follow-up message of its own, not the original response."""
        await self.db.write(
            lambda tx: tx.execute(
                "UPDATE questions SET message_id = ? WHERE id = ?", (message_id, question_id)
            )
        )

    async def question(self, question_id: str) -> Question | None:
        found = await self.db.fetchone(
            "SELECT id, kind, member_id, state, expires_at, payload FROM questions WHERE id = ?",
            (question_id,),
        )
        if found is None:
            return None
        return Question(
            found["id"],
            found["kind"],
            found["member_id"],
            QuestionState(found["state"]),
            datetime.fromisoformat(found["expires_at"]),
            found["payload"],
        )

    async def claim(self, question_id: str) -> bytes | None:
        """The answer's payload, if this is the first answer and the question has not expired;
        None otherwise (another click, here or in another process, was first)."""
        return await self.db.write(self._claim_in, question_id)

    def _claim_in(self, tx: Conn, question_id: str) -> bytes | None:
        now = iso(self.clock())
        found = fetch_row(
            tx,
            "SELECT payload FROM questions WHERE id = ? AND state = 'open' AND expires_at > ?",
            (question_id, now),
        )
        if found is None:
            return None
        tx.execute(
            "UPDATE questions SET state = 'answered', payload = NULL, closed_at = ? WHERE id = ?",
            (now, question_id),
        )
        return bytes(found["payload"])

    async def reopen(self, question_id: str, payload: bytes) -> None:
        """An answer that never reached the member (Discord had forgotten the click): open
        again, so their next click is answered, not told it already was."""
        await self.db.write(
            lambda tx: tx.execute(
                "UPDATE questions SET state = 'open', payload = ?, closed_at = NULL"
                " WHERE id = ? AND state = 'answered'",
                (payload, question_id),
            )
        )

    async def expire_due(self) -> list[Shown]:
        """Close every open question past its time (a click on one is told it expired), and
        forget those closed long ago; where each newly expired one was shown."""
        now = self.clock()
        work = await self.db.fetchone(
            "SELECT 1 FROM questions WHERE (state = 'open' AND expires_at <= ?)"
            " OR (state != 'open' AND closed_at < ?) LIMIT 1",
            (iso(now), iso(now - KEPT)),
        )
        if work is None:  # the usual minute: no write (nor write lock) for nothing
            return []
        return await self.db.write(self._expire_in)

    def _expire_in(self, tx: Conn) -> list[Shown]:
        now = self.clock()
        due = rows(
            tx,
            "SELECT id, kind, application_id, interaction_token, token_expires_at, message_id"
            " FROM questions WHERE state = 'open' AND expires_at <= ?",
            (iso(now),),
        )
        tx.execute(
            "UPDATE questions SET state = 'expired', payload = NULL, closed_at = ?"
            " WHERE state = 'open' AND expires_at <= ?",
            (iso(now), iso(now)),
        )
        tx.execute(
            "DELETE FROM questions WHERE state != 'open' AND closed_at < ?", (iso(now - KEPT),)
        )
        return [
            Shown(
                r["id"],
                r["kind"],
                r["application_id"],
                r["interaction_token"],
                _when(r["token_expires_at"]),
                r["message_id"],
            )
            for r in due
        ]
