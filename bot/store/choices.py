"""A member's choice after a prompt enhancement, recorded once: the first click decides, a
second one finds it made — unless the choice never started an image (the bot stopped before
the image was admitted, or it was refused): then it may be made again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import row as fetch_row


class Choice(StrEnum):
    ENHANCED = "enhanced"
    MINE = "mine"
    CANCEL = "cancel"


class PromptChoices:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.clock = db, clock

    async def choose(
        self, job_id: str, choice: Choice, member_id: int, *, retake: bool = False
    ) -> Choice | None:
        """Record the choice; None if it is the first (or, with `retake`, replaces one that
        started no image), else the choice made earlier."""
        return await self.db.write(self.choose_in, job_id, choice, member_id, retake=retake)

    def choose_in(
        self, tx: Conn, job_id: str, choice: Choice, member_id: int, *, retake: bool = False
    ) -> Choice | None:
        earlier = self.choice_in(tx, job_id)
        if earlier is not None:
            started = fetch_row(tx, "SELECT 1 FROM jobs WHERE parent_job_id = ? LIMIT 1", (job_id,))
            if not retake or earlier is Choice.CANCEL or started is not None:
                return earlier
            tx.execute(
                "UPDATE prompt_choices SET choice = ?, member_id = ?, created_at = ?"
                " WHERE job_id = ?",
                (choice.value, member_id, iso(self.clock()), job_id),
            )
            return None
        tx.execute(
            "INSERT INTO prompt_choices (job_id, choice, member_id, created_at)"
            " VALUES (?, ?, ?, ?)",
            (job_id, choice.value, member_id, iso(self.clock())),
        )
        return None

    async def choice(self, job_id: str) -> Choice | None:
        return await self.db.read(self.choice_in, job_id)

    def choice_in(self, conn: Conn, job_id: str) -> Choice | None:
        found = fetch_row(conn, "SELECT choice FROM prompt_choices WHERE job_id = ?", (job_id,))
        return None if found is None else Choice(found["choice"])
