"""A guild's ledger as people read it: a member's recent entries, every entry, the CSV export
with running balances."""

from __future__ import annotations

import csv
import io

from bot.store.db import Database
from bot.store.ledger_records import Entry, entry_of


class Statements:
    db: Database

    async def history(self, guild_id: int, member_id: int, limit: int = 20) -> list[Entry]:
        rows = await self.db.fetchall(
            "SELECT * FROM ledger_entries WHERE guild_id = ? AND member_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (guild_id, member_id, limit),
        )
        return [entry_of(r) for r in rows]

    async def entries(self, guild_id: int) -> list[Entry]:
        rows = await self.db.fetchall(
            "SELECT * FROM ledger_entries WHERE guild_id = ? ORDER BY id", (guild_id,)
        )
        return [entry_of(r) for r in rows]

    async def export_csv(self, guild_id: int) -> str:
        """Every entry of the guild, oldest first, with each member's running balance."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "entry_id",
                "created_at",
                "member_id",
                "kind",
                "amount",
                "delta",
                "balance_after",
                "job_id",
                "actor_id",
                "reason",
            ]
        )
        running: dict[int, int] = {}
        for e in await self.entries(guild_id):
            running[e.member_id] = running.get(e.member_id, 0) + e.delta
            writer.writerow(
                [
                    e.id,
                    e.created_at,
                    e.member_id,
                    e.kind,
                    e.amount,
                    e.delta,
                    running[e.member_id],
                    e.job_id or "",
                    e.actor_id or "",
                    e.reason or "",
                ]
            )
        return out.getvalue()
