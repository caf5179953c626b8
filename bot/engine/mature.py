"""Results rated above what their channel allows: never posted there.

When a job ends, its result is checked against the level its channel allowed at admission
(the job's max_rating). A result rated above it — or kept back upstream as mature content —
is not delivered: the job ends blocked, the orchestrator's charge is settled as for any
ending (the work was done), the member is told privately what happened ("rated R, this
channel allows up to PG-13"), and the images go to the moderators' review queue. There a
moderator releases them (to the guild's age-restricted release channel, or to the member by
DM), refunds the charge, or dismisses the item (the charge stands).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from bot.engine.lane import Ending
from bot.engine.parts import J, Parts
from bot.engine.publisher import ResultImage
from bot.engine.safety import ChannelNow, ReleaseFailed
from bot.safety import levels
from bot.store.db import Conn
from bot.store.jobs import JobRecord
from bot.store.safety import SafetySettings

log = logging.getLogger(__name__)

# What the channel reads on the job's public status message: no rating, nothing to probe.
NOT_POSTED = "not posted in this channel; a moderator will review the result"
# How long a release waits for the images (fresh URLs, a slow blob store) before giving up.
RELEASE_PATIENCE = timedelta(minutes=2)


@dataclass(frozen=True)
class Diversion:
    """A result kept from its channel: the ending the engine settles instead, the review
    item it opens and what the member is told privately."""

    ending: Ending
    rating: str | None
    allowed: str | None
    channel_id: int

    @property
    def reason(self) -> str:
        """For moderators."""
        if self.allowed is None:
            return f"rated {levels.name(self.rating)}; withheld upstream as mature content"
        return (
            f"rated {levels.name(self.rating)}; <#{self.channel_id}> allows up to "
            f"{levels.name(self.allowed)}"
        )

    @property
    def notice(self) -> str:
        """For the member, privately."""
        return notice(self.rating, self.allowed)

    def open_in(self, parts: Parts, tx: Conn, job: JobRecord) -> int:
        details = {"rating": self.rating, "allowed": self.allowed, "channel": self.channel_id}
        return parts.moderation.create_item_in(
            tx, job.guild_id, job.id, "mature", self.reason, details=details
        )


def notice(rating: str | None, allowed: str | None) -> str:
    """What the member is told privately of a result kept from its channel."""
    if allowed is None:
        where = "this channel does not show mature content"
    else:
        where = f"this channel allows up to {levels.name(allowed)}"
    return (
        f"This result was rated {levels.name(rating)} and {where}, so it was not "
        "posted there. A moderator will review it; they may send it to you or to an "
        "age-restricted channel, or refund it."
    )


async def untold_notice(parts: Parts, job: JobRecord) -> str | None:
    """The private notice of an ending told again after a restart: a kept-back result's,
    rebuilt from its review item (None for any other ending)."""
    item = await parts.moderation.item_for_job(job.id)
    if item is None or item.kind != "mature" or not item.open:  # decided: nothing to tell
        return None
    details = item.details or {}
    return notice(details.get("rating"), details.get("allowed"))


def diversion(job: JobRecord, ending: Ending, allowed: str | None) -> Diversion | None:
    """The diversion of a result its channel may not show (`allowed`: its level now, see
    allowed_now), or None to settle it as it is."""
    over = ending.status is J.DELIVERING and levels.above(ending.rating, allowed)
    if not (over or ending.withheld):
        return None
    blocked = replace(ending, status=J.BLOCKED, message=NOT_POSTED, block_reason=None)
    rating = ending.rating if ending.rating in levels.LEVELS else None
    return Diversion(blocked, rating, allowed, job.channel_id)


async def allowed_now(parts: Parts, job: JobRecord, ending: Ending) -> str | None:
    """The job's level from admission, lowered to the channel's level as it is now: an admin
    may have lowered it (/settings mature) or Discord's age restriction may have been lifted
    while the job ran. Never raised: the workflow was submitted for the admission level."""
    safety = parts.safety
    if job.max_rating is None or safety is None or ending.status is not J.DELIVERING:
        return job.max_rating
    if not levels.above(ending.rating, levels.LEVELS[0]):
        return job.max_rating  # unrated or PG: shown anywhere, nothing to look up
    where = None
    if safety.notices is not None:
        try:
            where = await safety.notices.channel_now(job.channel_id)
        except Exception:
            log.exception("job %s: the channel's age restriction could not be read", job.id)
    settings = await safety.store.settings(job.guild_id)
    return level_now(job, settings, where)


def level_now(job: JobRecord, settings: SafetySettings, where: ChannelNow | None) -> str | None:
    """The job's level from admission, lowered to its channel's level now (`where`: the
    channel as Discord has it now, None when it cannot be told)."""
    if job.max_rating is None:
        return None
    if where is None:
        # Unknown (the channel likely gone; the DM route is private): a thread's parent is
        # not known either, so only a level set on the channel itself can lower the job's.
        own = settings.channel_ratings.get(job.channel_id)
        return job.max_rating if own is None else levels.lower(job.max_rating, own)
    now = settings.level_for(job.channel_id, where.parent_id, where.age_restricted)
    return levels.lower(job.max_rating, now)


async def tell_member(parts: Parts, job: JobRecord, text: str) -> None:
    notices = parts.safety.notices if parts.safety is not None else None
    if notices is None:
        return
    try:
        told = await notices.tell_privately(job, text)
    except Exception:
        log.exception("job %s: could not tell the member privately", job.id)
        return
    if not told:
        log.info("job %s: the member could not be told privately (DMs closed?)", job.id)


async def fetch_for_release(parts: Parts, job: JobRecord) -> list[ResultImage]:
    """A kept-back result's images, for a moderator's release: unlocked upstream first if it
    withheld them, then fetched like any result. ReleaseFailed unless every image came."""
    upstream = parts.safety.upstream if parts.safety is not None else None
    if upstream is not None:
        await upstream.unlock(job)
    deadline = parts.clock() + RELEASE_PATIENCE
    images, total = await parts.lane.fetch_results(job, None, deadline, asyncio.sleep, parts.alert)
    if not total or len(images) < total:
        raise ReleaseFailed(
            f"only {len(images)} of {total} image(s) could be fetched from the image service"
        )
    return images
