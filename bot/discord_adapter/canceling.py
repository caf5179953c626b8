"""A cancel (the status message's button, /cancel) and its answer: what really happened — the
job stopped and what it cost, or it had already finished before the cancel reached it — not
only that a cancel was asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.discord_adapter.embeds import charge_words
from bot.engine.parts import NotAllowed
from bot.engine.requests import Requester
from bot.store.jobs import JobRecord, JobStatus
from bot.store.ledger_records import Hold

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

J = JobStatus
# What a cancel can still stop: the engine refuses a job that is already posting its images.
CANCELABLE = frozenset({J.HELD, J.QUEUED, J.SUBMITTED, J.RUNNING})
# How long the (deferred) answer waits for the job's ending before saying it is stopping.
CANCEL_WAIT = 10.0


async def cancel_job(bot: ImageBot, job_id: str, who: Requester) -> str:
    """Cancel the job for `who` (NotAllowed when they may not) and say how it ended."""
    try:
        job: JobRecord | None = await bot.engine.cancel(job_id, who)
    except NotAllowed:
        job = await bot.services.jobs.job(job_id)
        if job is None or job.status in CANCELABLE or not _theirs(job, who):
            raise
        return outcome(job, await bot.services.ledger.hold(job.id))  # ended before the click
    assert job is not None
    job = await bot.engine.settled(job.id, CANCEL_WAIT) or job
    return outcome(job, await bot.services.ledger.hold(job.id))


def _theirs(job: JobRecord, who: Requester) -> bool:
    return job.guild_id == who.guild_id and (job.member_id == who.member_id or who.is_moderator)


def outcome(job: JobRecord, hold: Hold | None = None) -> str:
    # What the member paid, after refunds (the server's part of a charge is not theirs).
    charged, refunded = (hold.charged, hold.refunded) if hold is not None else (job.charged, 0)
    paid = charge_words(charged, refunded) if charged else "nothing was charged"
    late = f"Job `{job.id}` had already finished before the cancel reached it"
    if job.status in CANCELABLE:
        return f"Canceling job `{job.id}`; its status message will say what was charged."
    if job.status is J.CANCELED:
        return f"Canceled job `{job.id}`; {paid}."
    if job.status is J.DELIVERING:
        return f"{late}: its images are being posted; {paid}."
    if job.status is J.DONE:
        return f"{late}: its images are posted; {paid}."
    return (
        f"Job `{job.id}` had already ended ({job.status.value}) before the cancel reached it; "
        "its status message says why and what was charged."
    )
