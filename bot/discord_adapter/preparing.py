"""Requests whose images are being downloaded and prepared, counted per member.

Admission counts a member's running jobs, but an edit's attachments (and the posted image an
Upscale or Remove background starts from) are fetched before it is admitted: without this count,
a burst of /edit commands (up to five 25 MB files each) or of tool clicks would all be downloaded
and held in memory at once, only for admission to refuse all but the first. A member may have as
many requests in preparation at once as jobs running (the server's limit).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from bot.engine.requests import Refusal, RefusalReason, Requester
from bot.store.guilds import GuildSettings, GuildStore


class Preparations:
    def __init__(self, guilds: GuildStore) -> None:
        self.guilds = guilds
        self._count: Counter[tuple[int, int]] = Counter()

    @contextlib.asynccontextmanager
    async def one(self, who: Requester, settings: GuildSettings | None) -> AsyncIterator[None]:
        """Count one more preparation of `who`'s while the block runs; Refusal when they
        already have as many as the server lets a member run jobs at once."""
        settings = settings or await self.guilds.settings(who.guild_id)
        limit = settings.per_member_concurrency
        key = (who.guild_id, who.member_id)
        if self._count[key] >= limit:
            raise Refusal(
                RefusalReason.MEMBER_BUSY,
                "the images of your last request are still being checked (the limit here is "
                f"{limit} at a time); try again in a moment",
            )
        self._count[key] += 1
        try:
            yield
        finally:
            self._count[key] -= 1
            if not self._count[key]:
                del self._count[key]
