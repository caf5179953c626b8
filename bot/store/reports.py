"""Spending reports: what members were charged per UTC day and model, and who spent most.

"Spent" is what a member finally paid for a job: the capture of its settled hold (plus any
charge above the hold) minus what moderators refunded for it, i.e. `captured + extra_charged -
refunded` — the same figure the budget and "spent this period" use. It counts on the UTC day
the job was asked (its hold made: the day the budget counts it on), under the job's model, so
a job asked before midnight and settled after it is not in two days' figures. A refund
therefore lowers the day the job was asked, not the day of the refund: a bar is what that
day's images cost in the end, and never goes below zero. Open holds (running jobs) are not
spending: what they hold now is reported apart, as `held`. The guild's losses, grants and
admins' takes are not spending. What the guild paid itself (AI pre-moderation checks,
`guild_charges`) is reported beside it, as `server_paid`, on the day the check ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import rows as fetch_rows

MAX_DAYS = 90
TOP_SPENDERS = 5

# The SQL expression for "spent", for a settled hold.
SPENT = "h.captured + h.extra_charged - h.refunded"


@dataclass(frozen=True)
class Spender:
    member_id: int
    amount: int


@dataclass(frozen=True)
class Spending:
    """A guild's spending over `days`, oldest day first; `by_day` holds non-zero amounts only."""

    days: tuple[date, ...]
    by_day: dict[tuple[date, str], int]
    top: tuple[Spender, ...]
    # Paid by the guild itself over the same days (AI pre-moderation checks).
    server_paid: int = 0
    # Held now by jobs not yet settled (running, or awaiting delivery), whenever asked.
    held: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_day.values())

    @property
    def models(self) -> tuple[str, ...]:
        """The models with spending, biggest total first (ties by name)."""
        totals = self.model_totals()
        return tuple(sorted(totals, key=lambda m: (-totals[m], m)))

    def model_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (_, model), amount in self.by_day.items():
            totals[model] = totals.get(model, 0) + amount
        return totals

    def day_total(self, day: date) -> int:
        return sum(a for (d, _), a in self.by_day.items() if d == day)


def window(days: int, now: datetime) -> tuple[date, ...]:
    """The last `days` UTC days, today included, oldest first."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}")
    today = now.astimezone(UTC).date()
    return tuple(today - timedelta(days=n) for n in range(days - 1, -1, -1))


class SpendingReports:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def spending(self, guild_id: int, days: int, top: int = TOP_SPENDERS) -> Spending:
        return await self.db.read(self.spending_in, guild_id, days, top)

    def spending_in(
        self, conn: Conn, guild_id: int, days: int, top: int = TOP_SPENDERS
    ) -> Spending:
        span = window(days, self.clock())
        start = datetime.combine(span[0], time(), UTC)
        end = datetime.combine(span[-1] + timedelta(days=1), time(), UTC)
        # created_at is ISO text in UTC (bot.store.db.iso): its first ten characters are the day.
        params = (guild_id, iso(start), iso(end))
        where = (
            "h.guild_id = ? AND h.settled_at IS NOT NULL AND h.created_at >= ? AND h.created_at < ?"
        )
        per_day = fetch_rows(
            conn,
            f"SELECT substr(h.created_at, 1, 10) AS day, j.model, SUM({SPENT}) AS spent"
            f" FROM holds h JOIN jobs j ON j.id = h.job_id WHERE {where}"
            " GROUP BY day, j.model HAVING spent > 0 ORDER BY day, j.model",
            params,
        )
        leaders = fetch_rows(
            conn,
            f"SELECT h.member_id, SUM({SPENT}) AS spent FROM holds h WHERE {where}"
            " GROUP BY h.member_id HAVING spent > 0 ORDER BY spent DESC, h.member_id LIMIT ?",
            (*params, top),
        )
        [server] = fetch_rows(
            conn,
            "SELECT COALESCE(SUM(amount), 0) AS paid FROM guild_charges"
            " WHERE guild_id = ? AND created_at >= ? AND created_at < ?",
            params,
        )
        [held] = fetch_rows(
            conn,
            "SELECT COALESCE(SUM(amount), 0) AS held FROM holds"
            " WHERE guild_id = ? AND settled_at IS NULL",
            (guild_id,),
        )
        return Spending(
            days=span,
            by_day={(date.fromisoformat(r["day"]), r["model"]): r["spent"] for r in per_day},
            top=tuple(Spender(r["member_id"], r["spent"]) for r in leaders),
            server_paid=int(server["paid"]),
            held=int(held["held"]),
        )
