"""Moderators' decisions on review items, and members' appeals — the rules, without Discord.

A review item is opened for each blocked job (the orchestrator's filter), each held job (the
guild's prompt filter or AI pre-moderation; nothing submitted yet, its Buzz held) and each
result rated above its channel's level (kept from the channel; bot/release.py). Closing
decisions settle an item exactly once — Approve or Reject a held job, Refund or Dismiss a
blocked one, Release a kept-back result (or send it by DM) — and the state
change, the money and the audit entry commit in one transaction; a second moderator gets
"already handled by X". Strike and Ban are sanctions, each applied at most once per item,
open or closed; enough strikes within the window ban the member automatically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.engine.engine import Engine
from bot.engine.safety import ChannelNow
from bot.metrics import Metrics
from bot.release import ReleaseRefused, Releases
from bot.review_actions import CLOSING, FITS, FOR_OTHERS, RELEASING, VERBS, Action, unfit
from bot.store import audit
from bot.store.db import Conn, Database, utcnow
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStatus, JobStore
from bot.store.ledger import Ledger
from bot.store.moderation import (
    RESUME_RELEASES_WITHIN,
    AlreadyHandled,
    ItemEvent,
    ModerationStore,
    ReviewItem,
)
from bot.store.sanctions import LongerBanStands

log = logging.getLogger(__name__)

MAX_APPEAL = 1000


class ReviewError(Exception):
    """A decision that does not apply; the text says why."""


class ReleaseUndone(ReviewError):
    """A release was decided, then could not be posted: the item is open again (its card
    must be redrawn, it may show the release as decided)."""


@dataclass(frozen=True)
class Outcome:
    item: ReviewItem
    job: JobRecord
    summary: str
    # What the member is told on their status message (None: nothing new for them).
    verdict: str | None = None
    strikes: int | None = None
    banned: bool = False
    # Buzz given back to the member by this decision (Refund).
    refunded: int = 0
    # A release's destination: the release channel (None with SEND_DM: the member's DMs).
    release_to: int | None = None


class ReviewService:
    def __init__(
        self,
        db: Database,
        engine: Engine,
        jobs: JobStore,
        ledger: Ledger,
        moderation: ModerationStore,
        guilds: GuildStore,
        clock: Callable[[], datetime] = utcnow,
        *,
        metrics: Metrics | None = None,
        releases: Releases | None = None,
    ) -> None:
        self.db, self.engine, self.jobs, self.ledger = db, engine, jobs, ledger
        self.moderation, self.guilds, self.clock = moderation, guilds, clock
        self.metrics = metrics or Metrics()
        self.releases = releases

    async def act(
        self,
        guild_id: int,
        item_id: int,
        action: Action,
        actor_id: int,
        *,
        days: int | None = None,
        reason: str | None = None,
        actor_is_admin: bool = False,
    ) -> Outcome:
        settings = await self.guilds.settings(guild_id)
        where = (
            await self._approval_channel(guild_id, item_id) if action is Action.APPROVE else None
        )
        outcome = await self.db.write(
            self._act,
            guild_id,
            item_id,
            action,
            actor_id,
            days,
            reason,
            settings.strikes_to_ban,
            settings.strike_window_days,
            where,
            actor_is_admin,
        )
        self.metrics.refunded(outcome.refunded)  # after the commit: only what was given
        if action in RELEASING and self.releases is not None:
            try:
                outcome = await self.releases.carry_out(outcome, outcome.release_to)
            except ReleaseRefused as exc:
                raise ReleaseUndone(str(exc)) from None
        if action is Action.APPROVE:
            self.engine.adopt(outcome.job.id)
        if outcome.verdict:
            ended_now = action is Action.REJECT and outcome.job.final
            await self.engine.notify(outcome.job, outcome.verdict, finished=ended_now)
        return outcome

    async def _approval_channel(self, guild_id: int, item_id: int) -> ChannelNow | None:
        """The held job's channel as Discord has it now, asked before the decision's
        transaction (NotAllowed when its result could not be posted there); None when
        there is nothing to approve (the transaction says why)."""
        item = await self.moderation.item(item_id)
        if item is None or item.guild_id != guild_id or not item.open or item.kind != "held":
            return None
        job = await self.jobs.job(item.job_id)
        if job is None or job.status is not JobStatus.HELD:
            return None
        return await self.engine.approval_channel(job)

    async def resume_releases(self) -> list[int]:
        """Releases recorded but never posted (the process died in between): posted now, the
        member told. The ids of the items carried out or opened again (their messages need a
        refresh)."""
        if self.releases is None:
            return []
        done = []
        since = self.clock() - RESUME_RELEASES_WITHIN
        for item, channel_id in await self.moderation.unposted_releases(since):
            job = await self.jobs.job(item.job_id)
            if job is None:
                continue
            outcome = Outcome(item, job, "released", release_to=channel_id)
            try:
                outcome = await self.releases.carry_out(outcome, channel_id)
            except ReleaseRefused as exc:  # the item is open again; the moderators see why
                log.warning("review #%d: release not resumed: %s", item.id, exc)
            else:
                log.info("review #%d: release resumed after a restart", item.id)
            done.append(item.id)
        return done

    def _act(
        self,
        tx: Conn,
        guild_id: int,
        item_id: int,
        action: Action,
        actor_id: int,
        days: int | None,
        reason: str | None,
        strikes_to_ban: int,
        window_days: int,
        where: ChannelNow | None = None,
        actor_is_admin: bool = False,
    ) -> Outcome:
        item = self.moderation.item_in(tx, item_id)
        if item is None or item.guild_id != guild_id:
            raise ReviewError("There is no such review item here.")
        job = self.jobs.job_in(tx, item.job_id)
        assert job is not None
        if action in CLOSING and not item.open:
            raise AlreadyHandled(item)  # before anything else: the first decision stands
        if action not in FITS[item.kind]:
            raise ReviewError(unfit(item, action))
        if action in FOR_OTHERS and job.member_id == actor_id and not actor_is_admin:
            verb = VERBS.get(action, f"{action.value} it")
            raise ReviewError(
                f"This is your own request: another moderator (or an admin) must {verb}."
            )
        if action in CLOSING:
            return self._close(tx, item, job, action, actor_id, where)
        if action is Action.STRIKE:
            return self._strike(tx, item, job, actor_id, reason, strikes_to_ban, window_days)
        return self._ban(tx, item, job, actor_id, reason, days)

    def _close(
        self,
        tx: Conn,
        item: ReviewItem,
        job: JobRecord,
        action: Action,
        actor_id: int,
        where: ChannelNow | None = None,
    ) -> Outcome:
        if item.kind == "held" and job.status is not JobStatus.HELD:
            return self._close_gone(tx, item, job, action, actor_id)
        if action in RELEASING:
            return self._release(tx, item, job, action, actor_id)
        refundable = 0
        if action is Action.REFUND:
            hold = self.ledger.hold_in(tx, job.id)
            refundable = hold.refundable if hold is not None else 0
            if item.refund_amount is not None:  # the missing images' share only
                refundable = min(refundable, item.refund_amount)
            if refundable <= 0:
                raise ReviewError(
                    "Nothing was charged for this job, so there is nothing to refund; use Dismiss."
                )
        closed = self.moderation.close_item_in(tx, item.id, CLOSING[action], actor_id)
        verdict: str | None
        if action is Action.APPROVE:
            job = self.engine.approve_in(tx, job.id, where)
            summary, verdict = "approved: the job runs now", "a moderator approved it; it runs now"
        elif action is Action.REJECT:
            job = self.engine.reject_in(tx, job.id)
            self.jobs.untold_in(tx, job.id)  # told by act(); at the next start if not
            summary = "rejected: the held Buzz was released"
            verdict = "a moderator decided this request will not run; nothing was charged"
        elif action is Action.REFUND:
            self.ledger.refund_in(
                tx,
                job.id,
                actor_id=actor_id,
                reason=f"refund of review #{item.id}",
                amount=refundable,
            )
            summary = f"refunded {refundable:,} Buzz to <@{job.member_id}>"
            if item.refund_amount is not None:
                verdict = (
                    f"{job.missing_images} image(s) could not be posted; a moderator refunded "
                    f"their {refundable:,} Buzz"
                )
            else:
                lead = "blocked; " if item.kind == "blocked" else "not posted; "
                verdict = f"{lead}a moderator refunded the {refundable:,} Buzz it cost"
        else:
            summary = "dismissed: no change"
            # The member of an undelivered job was told "a moderator will look at the charge".
            lost = (
                f"{job.missing_images} image(s) could not be posted"
                if item.refund_amount is not None
                else "not posted"
            )
            verdict = {
                "blocked": "blocked; a moderator reviewed it and the block stands",
                "mature": "not posted; a moderator reviewed it and it will not be posted",
                "undelivered": f"{lost}; a moderator looked at the charge and it stands",
            }.get(item.kind)
        if verdict is not None and action is not Action.REJECT:
            # The verdict is the member's news now: an ending a restart left untold would
            # tell them a stale story (a reject's own ending is marked untold above).
            self.jobs.told_in(tx, job.id)
        self._audit(tx, closed, action, actor_id, refunded=refundable or None)
        return Outcome(closed, job, summary, verdict, refunded=refundable)

    def _release(
        self, tx: Conn, item: ReviewItem, job: JobRecord, action: Action, actor_id: int
    ) -> Outcome:
        """Record the release (once); act() posts the images after the commit."""
        if self.releases is None:
            raise ReviewError("Releasing results is not available here.")
        try:
            target = self.releases.target_in(tx, item, action is Action.RELEASE)
        except ReleaseRefused as exc:
            raise ReviewError(str(exc)) from None
        closed = self.moderation.close_item_in(tx, item.id, CLOSING[action], actor_id)
        self.jobs.told_in(tx, job.id)  # released: the untold "kept back" story is stale
        self._audit(tx, closed, action, actor_id, channel=target)
        return Outcome(closed, job, "released", None, release_to=target)

    def _close_gone(
        self, tx: Conn, item: ReviewItem, job: JobRecord, action: Action, actor_id: int
    ) -> Outcome:
        """A held job the member canceled while it waited: nothing can run or be released."""
        if action is Action.APPROVE:
            raise ReviewError(
                f"The member's job is already {job.status.value}, so it cannot run; "
                "Reject clears the item."
            )
        closed = self.moderation.close_item_in(tx, item.id, CLOSING[action], actor_id)
        self._audit(tx, closed, action, actor_id, job_status=job.status.value)
        return Outcome(closed, job, f"rejected: the job was already {job.status.value}", None)

    def _strike(
        self,
        tx: Conn,
        item: ReviewItem,
        job: JobRecord,
        actor_id: int,
        reason: str | None,
        strikes_to_ban: int,
        window_days: int,
    ) -> Outcome:
        earlier = self.moderation.strike_giver_in(tx, item.id)
        if earlier is not None:
            raise ReviewError(f"A strike was already given for this item by <@{earlier}>.")
        count = self.moderation.add_strike_in(
            tx,
            item.guild_id,
            job.member_id,
            actor_id=actor_id,
            reason=reason or f"review #{item.id}",
            item_id=item.id,
            window_days=window_days,
        )
        banned = False
        summary = f"strike for <@{job.member_id}> ({count} in {window_days} days)"
        if strikes_to_ban and count >= strikes_to_ban:
            try:  # with no end: a shorter ban in force must not cut it short
                self.moderation.ban_in(
                    tx,
                    item.guild_id,
                    job.member_id,
                    actor_id=actor_id,
                    reason=f"automatic: {count} strikes in {window_days} days",
                    days=None,
                )
            except LongerBanStands:
                pass  # already banned with no end
            else:
                banned = True
                summary += "; automatically banned from the bot here"
        self._audit(tx, item, Action.STRIKE, actor_id, strikes=count, banned=banned)
        fresh = self.moderation.item_in(tx, item.id) or item
        return Outcome(fresh, job, summary, None, strikes=count, banned=banned)

    def _ban(
        self,
        tx: Conn,
        item: ReviewItem,
        job: JobRecord,
        actor_id: int,
        reason: str | None,
        days: int | None,
    ) -> Outcome:
        earlier = self.moderation.ban_giver_in(tx, item.id)
        if earlier is not None:
            raise ReviewError(f"A ban was already given for this item by <@{earlier}>.")
        try:  # another moderator's longer ban stands: a press on one item must not shorten it
            ban = self.moderation.ban_in(
                tx,
                item.guild_id,
                job.member_id,
                actor_id=actor_id,
                reason=reason or f"review #{item.id}",
                days=days,
                item_id=item.id,
            )
        except (ValueError, LongerBanStands) as exc:
            raise ReviewError(str(exc)) from None
        until = f" until {ban.expires_at:%Y-%m-%d %H:%M} UTC" if ban.expires_at else ""
        self._audit(tx, item, Action.BAN, actor_id, days=days, reason=reason)
        fresh = self.moderation.item_in(tx, item.id) or item
        return Outcome(
            fresh, job, f"banned <@{job.member_id}> from the bot here{until}", None, banned=True
        )

    def _audit(
        self, tx: Conn, item: ReviewItem, action: Action, actor_id: int, **details: object
    ) -> None:
        audit.record(
            tx,
            self.clock(),
            f"review.{action.value}",
            guild_id=item.guild_id,
            actor_id=actor_id,
            target=f"review:{item.id}",
            job=item.job_id,
            **details,
        )

    async def appealable(self, guild_id: int, job_id: str, member_id: int) -> ReviewItem:
        """The open review item a member may appeal on their job, or ReviewError saying why
        not (checked again, in the transaction, when the appeal arrives)."""
        job = await self.jobs.job(job_id)
        if job is None or job.guild_id != guild_id:
            raise ReviewError("I cannot find that job here any more.")
        if job.member_id != member_id:
            raise ReviewError("Only the member whose job this is can appeal.")
        item = await self.moderation.item_for_job(job.id)
        if item is None:
            raise ReviewError("There is nothing to appeal for this job.")
        if not item.open:
            raise ReviewError(f"This was already reviewed: {item.status}.")
        return item

    async def appeal(self, guild_id: int, job_id: str, member_id: int, note: str) -> ReviewItem:
        """The member's side of the story joins the review item."""
        note = note.strip()
        if not note:
            raise ReviewError("Write a few words for the moderators.")
        if len(note) > MAX_APPEAL:
            raise ReviewError(f"An appeal can be at most {MAX_APPEAL} characters.")

        def run(tx: Conn) -> ReviewItem:
            job = self.jobs.job_in(tx, job_id)
            if job is None or job.guild_id != guild_id or job.member_id != member_id:
                raise ReviewError("Only the member whose job this is can appeal.")
            found = self.moderation.item_for_job_in(tx, job_id)
            if found is None:
                raise ReviewError("There is nothing to appeal for this job.")
            if not found.open:
                # The modal was open while a moderator decided: the decision already stands.
                raise ReviewError(f"This was already reviewed: {found.status}.")
            item = self.moderation.appeal_in(tx, found.id, note)
            audit.record(
                tx,
                self.clock(),
                "review.appeal",
                guild_id=guild_id,
                actor_id=member_id,
                target=f"review:{item.id}",
                job=job_id,
            )
            return item

        return await self.db.write(run)

    async def history(self, item_id: int) -> list[ItemEvent]:
        return await self.moderation.item_events(item_id)


__all__ = [
    "CLOSING",
    "Action",
    "AlreadyHandled",
    "Outcome",
    "ReleaseUndone",
    "ReviewError",
    "ReviewService",
]
