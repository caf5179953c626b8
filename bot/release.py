"""Releasing a result that was kept from its channel (rated above the level it allows): a
moderator's decision on a 'mature' review item, carried out after it is recorded.

The decision is taken first, once (a second moderator gets "already handled"); then the
images are fetched (unlocked upstream if it withheld them) and posted — in the guild's
age-restricted release channel, or to the member by DM. If that fails, the item opens again
and the moderator is told why. The charge is not touched: the member paid for the result when
the job ended, and a release delivers it (Refund is the other way to settle it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from bot.engine.engine import Engine
from bot.engine.publisher import PostFailed, ResultImage
from bot.engine.safety import ReleaseFailed
from bot.safety import levels
from bot.store import audit
from bot.store.db import Conn, Database, StoreBusy, utcnow
from bot.store.jobs import JobRecord
from bot.store.moderation import ModerationStore, ReviewItem
from bot.store.safety import SafetyStore
from bot.store.serial import ConnectionClosed

if TYPE_CHECKING:
    from bot.review import Outcome

log = logging.getLogger(__name__)


class ReleasePoster(Protocol):
    async def post_release(
        self, job: JobRecord, images: list[ResultImage], channel_id: int | None
    ) -> list[int]:
        """Post a released result in `channel_id` (None: to the member by DM); the ids of the
        messages. ReleaseFailed (or PostFailed) when it cannot be posted there."""

    async def find_release(self, job: JobRecord, channel_id: int | None) -> list[int] | None:
        """The messages of an earlier post of this release in `channel_id` (None: the
        member's DMs) if it is there whole, else None. ReleaseFailed or PostFailed."""


class ReleaseRefused(Exception):
    """This release cannot be made (no release channel set); the text says why."""


class Releases:
    # Seconds between tries to record a release the database would not take at once.
    record_retry = 5.0

    def __init__(
        self,
        db: Database,
        engine: Engine,
        moderation: ModerationStore,
        safety: SafetyStore,
        poster: ReleasePoster,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.engine, self.moderation = db, engine, moderation
        self.safety, self.poster, self.clock = safety, poster, clock
        self._recording: set[asyncio.Task[None]] = set()

    def target_in(self, tx: Conn, item: ReviewItem, to_channel: bool) -> int | None:
        """Where the release goes: the guild's release channel, or None for a DM."""
        if not to_channel:
            return None
        settings = self.safety.settings_in(tx, item.guild_id)
        channel = settings.release_channel_id
        if channel is None:
            raise ReleaseRefused(
                "No release channel is set: an admin chooses one with /settings mature "
                "release-channel (an age-restricted channel), or send it to the member by DM."
            )
        # The release channel's level holds there too: its own, else the server's (it is
        # age-restricted: checked when it was chosen, and again when posting).
        own = settings.level_for(channel, None, age_restricted=True)
        rating = item.details.get("rating")
        if levels.rank(rating) < 0:  # kept back as mature with no usable rating: R at least
            rating = levels.LEAST_MATURE
        if levels.above(rating, own):
            raise ReleaseRefused(
                f"<#{channel}> allows up to {levels.name(own)} (/settings mature) and this "
                f"result is rated {levels.name(rating)}: send it by DM, or raise that "
                "channel's level."
            )
        return channel

    async def carry_out(self, outcome: Outcome, channel_id: int | None) -> Outcome:
        """Fetch and post the released images, record the post, then tell the member; on
        failure the item opens again. The member is told only once it is recorded: a release
        the next start records (Review.resume_releases) is told then, and only then."""
        job, item = outcome.job, outcome.item
        message_ids = await self._post(job, item, channel_id)
        if channel_id is None:
            summary, verdict = (
                f"sent to <@{job.member_id}> by DM",
                "a moderator reviewed it and sent the result to you by DM",
            )
        else:
            summary, verdict = (
                f"released in <#{channel_id}>",
                f"a moderator reviewed it and posted the result in <#{channel_id}>",
            )
        try:
            await self.db.write(self._posted, item, channel_id, message_ids)
        except StoreBusy:
            # It is posted: only its record waits (saying "nothing was done" would be wrong).
            # Recorded, and the member told, once the database takes it; if the bot stops
            # first, the next start finds the post and does both.
            log.warning(
                "review #%d: released, but the database is busy: recorded (and the member "
                "told) once it is free",
                item.id,
            )
            task = asyncio.create_task(
                self._record_later(job, item, channel_id, message_ids, verdict),
                name=f"release-record-{item.id}",
            )
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)
        else:
            await self.engine.notify(job, verdict)
        return replace(outcome, summary=summary, verdict=None)  # told here, not by the caller

    async def _record_later(
        self,
        job: JobRecord,
        item: ReviewItem,
        channel_id: int | None,
        message_ids: list[int],
        verdict: str,
    ) -> None:
        while True:
            await asyncio.sleep(self.record_retry)
            try:
                await self.db.write(self._posted, item, channel_id, message_ids)
            except StoreBusy:
                continue
            except ConnectionClosed:  # stopping: the next start records it and tells them
                return
            except Exception:  # a bug: logged now, not when the task is collected
                log.exception("review #%d: release not recorded", item.id)
                return
            break
        log.info("review #%d: release recorded", item.id)
        await self.engine.notify(job, verdict)

    def close(self) -> None:
        for task in self._recording:
            task.cancel()

    async def _post(self, job: JobRecord, item: ReviewItem, channel_id: int | None) -> list[int]:
        try:
            # Posted before it could be recorded (the process died, or stopped, in between):
            # a second release would show the member's result twice.
            earlier = await self.poster.find_release(job, channel_id)
            if earlier is not None:
                log.info("review #%d: release found already posted", item.id)
                return earlier
            images = await self.engine.withheld_images(job)
            return await self.poster.post_release(job, images, channel_id)
        except (ReleaseFailed, PostFailed) as exc:
            log.warning("review #%d: release failed: %s", item.id, exc)
            problem = str(exc)
        except Exception:  # a bug must not leave the item closed with nothing delivered
            log.exception("review #%d: release failed", item.id)
            problem = "an unexpected error (the logs have it)"
        await self.db.write(self._reopen, item, problem, item.handled_by)
        raise ReleaseRefused(
            f"The result could not be released: {problem}; the item is open again."
        )

    def _reopen(self, tx: Conn, item: ReviewItem, error: str, actor_id: int | None) -> None:
        self.moderation.reopen_item_in(tx, item.id, f"release failed: {error}"[:500])
        audit.record(
            tx,
            self.clock(),
            "review.release_failed",
            guild_id=item.guild_id,
            actor_id=actor_id,
            target=f"review:{item.id}",
            job=item.job_id,
            error=error,
        )

    def _posted(
        self, tx: Conn, item: ReviewItem, channel_id: int | None, message_ids: list[int]
    ) -> None:
        audit.record(
            tx,
            self.clock(),
            "review.released",
            guild_id=item.guild_id,
            actor_id=item.handled_by,
            target=f"review:{item.id}",
            job=item.job_id,
            channel=channel_id,
            dm=channel_id is None,
            messages=message_ids,
        )
