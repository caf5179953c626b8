"""AI pre-moderation checks left open (premoderation_checks): cut off when the bot stopped,
or ended with a charge that could not be read. Each is looked up upstream, stopped if it
still runs, and what it was charged counted against the guild's budget — once: the write
that settles it is the one that counts it, whoever gets there first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bot.engine.parts import Parts
from bot.store.db import StoreBusy

log = logging.getLogger(__name__)

# Open checks are looked at again at most this often (seconds), before a new check.
SETTLE_EVERY = 60.0


class OpenChecks:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        # Checks this process is running (or recording) now: theirs to settle, not a pass's.
        self.owned: set[str] = set()
        self._last: float | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[int] | None = None
        self._closed = False  # stopping: no pass starts on a client and database closing

    def kick(self) -> None:
        """Settle in the background when due: a member's check never waits on the lookups."""
        if self._closed or not self.due() or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._settle_logged(), name="premoderation-settle")

    async def _settle_logged(self) -> int:
        try:
            return await self.settle()
        except Exception:  # a background pass: said in the log, not lost with its task
            log.exception("settling open pre-moderation checks failed; tried again later")
            return 0

    async def close(self) -> None:
        """At stop: a pass under way is cut off (what it has not settled stays open), and a
        check asked for during the drain starts none."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def due(self) -> bool:
        return self._last is None or time.monotonic() - self._last >= SETTLE_EVERY

    async def settle(self) -> int:
        """Settle every open check not running here; how many were counted. One pass at a
        time: a second caller meanwhile leaves it to the first."""
        safety = self.parts.safety
        if safety is None or safety.upstream is None or self._lock.locked():
            return 0
        async with self._lock:
            self._last = time.monotonic()
            try:
                found = await safety.store.open_checks()
            except StoreBusy:
                return 0
            counted = 0
            for check in found:
                if check.check_id in self.owned:
                    continue
                cost = await safety.upstream.charge_of(check.check_id)
                if cost is None:
                    continue  # still unreadable: the next pass
                try:
                    await safety.store.record_check(
                        check.guild_id,
                        check.member_id,
                        check.job_id,
                        cost,
                        check_id=check.check_id,
                        outcome="settled later",
                    )
                except StoreBusy:
                    return counted
                log.info("pre-moderation check %s settled: %d Buzz", check.check_id, cost)
                counted += 1
            return counted
