"""Decisions about a job from outside its task: a member's (or moderator's) cancel, and a
moderator's approve or reject of a held job (run inside the review's own transaction)."""

from __future__ import annotations

from bot.engine.admission import check_concurrency
from bot.engine.driver import Driver
from bot.engine.mature import level_now
from bot.engine.parts import J, NotAllowed, Parts
from bot.engine.requests import Refusal, Requester
from bot.engine.safety import ChannelNow
from bot.store.db import Conn
from bot.store.jobs import JobRecord, TransitionError

REJECTED_MESSAGE = "a moderator decided this request will not run; nothing was charged"


def check_reroll(job: JobRecord, actor: Requester, reroll_anyone: bool) -> None:
    """The same request again is the asker's to make, or anyone's where the guild allows it
    (charged to whoever asks)."""
    if actor.member_id != job.member_id and not reroll_anyone:
        raise NotAllowed("only the member who asked can re-roll this here")


def check_delete(job: JobRecord, actor: Requester) -> None:
    """A posted result may be taken down by its asker or a moderator."""
    if actor.member_id != job.member_id and not actor.is_moderator:
        raise NotAllowed("only the member who asked, or a moderator, can delete this")


class Decisions:
    def __init__(self, parts: Parts, driver: Driver) -> None:
        self.parts = parts
        self.driver = driver

    async def approval_channel(self, job: JobRecord) -> ChannelNow | None:
        """Before a held job is approved: its channel as Discord has it now (None when it
        cannot be told). NotAllowed when its result could no longer be posted there: the
        member would pay for images that cannot reach them where they asked."""
        notices = self.parts.safety.notices if self.parts.safety is not None else None
        if notices is None:
            return None
        why = await notices.cannot_post(job.channel_id)
        if why is not None:
            raise NotAllowed(
                f"the result cannot be posted in <#{job.channel_id}> any more ({why}); "
                "reject the job, or fix that and approve it again"
            )
        return await notices.channel_now(job.channel_id)

    def approve_in(self, tx: Conn, job_id: str, where: ChannelNow | None = None) -> JobRecord:
        """A held job is released to run (its Buzz is already held); call adopt() after commit.
        What changed while it waited is checked again: a ban, the channel closed to image
        commands, the model switched off (by an admin, or retired upstream), the concurrency
        limits; and it runs for its channel's level as it is now (`where`: approval_channel)."""
        parts = self.parts
        held = parts.jobs.job_in(tx, job_id)
        assert held is not None
        if parts.moderation.active_ban_in(tx, held.guild_id, held.member_id) is not None:
            raise NotAllowed("the member has been banned since; reject the job instead")
        settings = parts.guilds.settings_in(tx, held.guild_id)
        parent_id = where.parent_id if where is not None else None
        # Unknown now (a passing fault): a thread's parent cannot be told, so only a channel
        # closed by name refuses (it was allowed at admission).
        known = where is not None or held.channel_id in settings.denied_channels
        if known and not settings.channel_allowed(held.channel_id, parent_id):
            raise NotAllowed(
                f"image commands are no longer allowed in <#{held.channel_id}>; "
                "reject the job instead"
            )
        if not settings.model_enabled(held.model):
            raise NotAllowed(
                f"the model {held.model} has been switched off here since; reject the job instead"
            )
        mine, theirs = parts.jobs.in_flight_in(tx, held.guild_id, held.member_id)
        try:  # worded for the moderator
            check_concurrency(mine, theirs, settings, member_id=held.member_id)
        except Refusal as exc:
            raise NotAllowed(str(exc)) from None
        rating = held.max_rating
        if parts.safety is not None:  # never raised: only an admin's lowering applies
            rating = level_now(held, parts.safety.store.settings_in(tx, held.guild_id), where)
        return parts.jobs.transition_in(
            tx,
            job_id,
            J.QUEUED,
            detail="approved",
            deadline_at=parts.clock() + parts.settings.deadline,
            max_rating=rating,
        )

    def reject_in(self, tx: Conn, job_id: str) -> JobRecord:
        """A held job will not run: nothing charged, the whole hold released."""
        return self.parts.release(tx, job_id, J.REJECTED, error=REJECTED_MESSAGE)

    async def cancel(self, job_id: str, actor: Requester) -> JobRecord:
        parts = self.parts
        job = await parts.jobs.job(job_id)
        if job is None or job.guild_id != actor.guild_id:
            raise NotAllowed("no such job here")
        if job.member_id != actor.member_id and not actor.is_moderator:
            raise NotAllowed("only the member who asked (or a moderator) can cancel this job")
        if job.final or job.status is J.DELIVERING:
            raise NotAllowed(f"this job is already {job.status.value}")
        if job.status is J.HELD:
            return await self._withdraw(job_id, actor)
        await parts.db.write(parts.jobs.update_in, job_id, cancel_requested_by=actor.member_id)
        if job.workflow_id:
            # In the background: the caller is answering a Discord interaction, and the
            # orchestrator may take a while (retries). The job's task settles the ending.
            self.driver.background(self.driver.cancel_upstream(job))
        self.driver.wake(job_id)
        refreshed = await parts.jobs.job(job_id)
        assert refreshed is not None
        return refreshed

    async def _withdraw(self, job_id: str, actor: Requester) -> JobRecord:
        """A held job the member takes back: nothing ran, nothing is charged, and its review
        item closes as withdrawn."""
        parts = self.parts

        def withdraw(tx: Conn) -> tuple[JobRecord | None, int | None]:
            current = parts.jobs.job_in(tx, job_id)
            if current is None or current.status is not J.HELD:
                return None, None  # a moderator decided first (approved: it may be running)
            canceled = parts.release(tx, job_id, J.CANCELED, cancel_requested_by=actor.member_id)
            item = parts.moderation.open_item_for_job_in(tx, job_id)
            if item is None:
                return canceled, None
            parts.moderation.close_item_in(tx, item.id, "withdrawn", actor.member_id)
            return canceled, item.id

        try:
            job, item_id = await parts.db.write(withdraw)
        except TransitionError as exc:
            raise NotAllowed(f"this job was just {exc.current} by a moderator") from None
        if job is None:
            # Approved meanwhile: cancel it as a running job (settled from what upstream
            # charged); rejected meanwhile: the cancel says it is already rejected.
            return await self.cancel(job_id, actor)
        await parts.status(job, "canceled; nothing was charged")
        if item_id is not None and parts.reviews is not None:
            await parts.reviews.on_review_changed(item_id)
        return job
