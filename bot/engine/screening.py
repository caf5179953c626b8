"""Safety checks at admission, before anything is held: which content level the request's
channel allows (stored on the job), edit sources rated above it (refused privately), and AI
pre-moderation of the prompt (flagged: held for review like a prompt-filter match).

Pre-moderation is a small upstream workflow the guild pays for: its cost is recorded in the
audit and counted against the guild's budget, never the member's Buzz. What it found is for
moderators only; the member reads that the request waits for review, never the labels.

A verdict is kept for a few minutes per guild, prompt and labels: a prompt checked before it is
enhanced is not checked (and paid for) again when the member keeps it, nor on a re-roll."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bot.engine.open_checks import OpenChecks
from bot.engine.parts import Parts
from bot.engine.requests import JobRequest, Refusal, RefusalReason
from bot.engine.safety import PremoderationFailed, PreVerdict, Safety
from bot.safety import levels
from bot.store.db import Conn, StoreBusy
from bot.store.moderation import ModerationStore
from bot.store.safety import SafetySettings

log = logging.getLogger(__name__)

PREMODERATION = "premoderation"
VERDICT_TTL = 600.0  # seconds a pre-moderation verdict is reused
VERDICTS_KEPT = 2048
# A server switched pre-moderation on on the Civitai lane, then the bot moved without a token.
NO_UPSTREAM = (
    "premoderation",
    "a server has AI pre-moderation on, and this bot has no CIVITAI_TOKEN to run it: its "
    "requests wait for the moderators (or go unchecked, as the server chose). Set "
    "CIVITAI_TOKEN, or its admins switch it off with /settings premoderation enabled:False",
)
# (the request's check id, guild, member, labels, prompt digest): which request a failed
# check held; another request (even with the same words) is checked on its own.
FailureKey = tuple[str, int, int, tuple[str, ...], str]


@dataclass(frozen=True)
class HeldFor:
    """Why a request waits for a moderator before it runs (a review item of kind 'held')."""

    reason: str
    source: str  # filter | premoderation
    details: dict[str, Any] = field(default_factory=dict)

    def open_in(self, moderation: ModerationStore, tx: Conn, guild_id: int, job_id: str) -> int:
        return moderation.create_item_in(
            tx, guild_id, job_id, "held", self.reason, source=self.source, details=self.details
        )


@dataclass(frozen=True)
class Screened:
    # The channel's level, for the job (None: no safety parts, nothing is checked).
    max_rating: str | None = None
    held: HeldFor | None = None


@dataclass
class Verdict:
    """A successful pre-moderation check, kept a while for the same prompt."""

    at: float  # time.monotonic() when it was made
    held: HeldFor | None
    # What record_check still has to record (cost, outcome, labels): the database refused.
    unrecorded: dict[str, Any] | None = None


class Screening:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        # (guild, labels, prompt digest) -> the verdict: successful checks only.
        self._verdicts: OrderedDict[tuple[int, tuple[str, ...], str], Verdict] = OrderedDict()
        # Failed checks upstream charged whose record the database refused: (guild, member,
        # job, record), recorded before the next check's.
        self._unrecorded: list[tuple[int, int, str, dict[str, Any]]] = []
        # A check before an enhancement that failed and held the request by the guild's
        # fallback: (when, the hold). The request's admission takes it instead of checking
        # again: a pass would run it unenhanced and unreviewed, the guild paying twice.
        self._failed_holds: OrderedDict[FailureKey, tuple[float, HeldFor]] = OrderedDict()
        # Checks written down before they are submitted, settled once their cost is known.
        self.open_checks = OpenChecks(parts)

    async def prompt_held(self, request: JobRequest) -> HeldFor | None:
        """AI pre-moderation of the request's prompt alone, when the guild has it on: for a
        prompt about to go upstream for something else first (an enhancement). The request
        carries its own check id (Engine.precheck)."""
        safety = self.parts.safety
        if safety is None or request.precheck_id is None:
            return None
        settings = await safety.store.settings(request.requester.guild_id)
        if not settings.premoderation:
            return None
        held = await self._premoderate(safety, settings, request, request.precheck_id)
        key = failure_key(request, settings)
        if held is not None and held.details.get("fallback") == "hold" and key is not None:
            self._failed_holds[key] = (time.monotonic(), held)
            while len(self._failed_holds) > VERDICTS_KEPT:
                self._failed_holds.popitem(last=False)
        return held

    async def screen(
        self, request: JobRequest, job_id: str, filter_reason: str | None = None
    ) -> Screened:
        """The channel's level, the sources checked against it (Refusal), and whether the
        request is held: by the prompt filter's match, else by AI pre-moderation."""
        safety = self.parts.safety
        held = HeldFor(filter_reason, "filter") if filter_reason else None
        if safety is None:
            return Screened(None, held)
        who = request.requester
        settings = await safety.store.settings(who.guild_id)
        level = settings.level_for(who.channel_id, who.parent_channel_id, who.age_restricted)
        await self._check_sources(safety, request, level)
        key = failure_key(request, settings)
        failed = self._failed_holds.pop(key, None) if key is not None else None
        if held is None and settings.premoderation:
            if (
                key is not None
                and failed is not None
                and time.monotonic() - failed[0] < VERDICT_TTL
            ):
                held = await self._failed_again(safety, request, job_id, key, failed)
            else:
                held = await self._premoderate(safety, settings, request, job_id)
        return Screened(level, held)

    async def _failed_again(
        self,
        safety: Safety,
        request: JobRequest,
        job_id: str,
        key: FailureKey,
        failed: tuple[float, HeldFor],
    ) -> HeldFor:
        """The hold of a check that failed before the request's enhancement, recorded as
        reused (cost 0) for this job."""
        who = request.requester
        try:
            await safety.store.record_check(
                who.guild_id, who.member_id, job_id, 0, outcome="failed", reused=True
            )
        except StoreBusy:
            self._failed_holds[key] = failed
            raise
        return failed[1]

    async def check_sources(self, request: JobRequest) -> None:
        """Refusal when an edit source is rated above the request's channel's level: for
        sources about to go upstream for something else first (an enhancement)."""
        safety = self.parts.safety
        if safety is None or not request.sources:
            return
        who = request.requester
        settings = await safety.store.settings(who.guild_id)
        level = settings.level_for(who.channel_id, who.parent_channel_id, who.age_restricted)
        await self._check_sources(safety, request, level)

    async def _check_sources(self, safety: Safety, request: JobRequest, level: str) -> None:
        images = [s for s in request.sources if s.role == "image"]
        if not images or safety.upstream is None or level == levels.TOP:
            return  # (nothing is rated above everything)
        upstream = safety.upstream
        ratings = await asyncio.gather(*(upstream.rate_source(s.data, s.mime) for s in images))
        for number, rating in enumerate(ratings, start=1):
            if levels.above(rating, level):
                which = "your image" if len(images) == 1 else f"image {number}"
                raise Refusal(
                    RefusalReason.SOURCE_RATING,
                    f"{which} was rated {levels.name(rating)} and this channel allows up to "
                    f"{levels.name(level)}",
                )

    async def _record_late(self, safety: Safety) -> None:
        """Record the charged failed checks the database refused before (it may still)."""
        while self._unrecorded:
            guild_id, member_id, job_id, record = self._unrecorded[0]
            try:
                await safety.store.record_check(guild_id, member_id, job_id, **record)
            except StoreBusy:
                return  # still refused: kept for the next check
            self._unrecorded.pop(0)

    async def _premoderate(
        self, safety: Safety, settings: SafetySettings, request: JobRequest, job_id: str
    ) -> HeldFor | None:
        who = request.requester
        await self._record_late(safety)
        labels = settings.premoderation_labels
        key = (
            who.guild_id,
            tuple(labels or ()),
            hashlib.sha256(request.options.prompt.encode()).hexdigest(),
        )
        kept = self._verdicts.get(key)
        if kept is not None and time.monotonic() - kept.at < VERDICT_TTL:
            # A check paid for but not recorded yet (the database refused) is recorded now.
            unrecorded, kept.unrecorded = kept.unrecorded, None
            record = unrecorded or {
                "cost": 0,
                "outcome": "flagged" if kept.held else "clean",
                "reused": True,
            }
            try:
                await safety.store.record_check(who.guild_id, who.member_id, job_id, **record)
            except StoreBusy:
                kept.unrecorded = unrecorded
                raise
            return kept.held
        check_id = f"{job_id}-premod"
        self.open_checks.kick()
        self.open_checks.owned.add(check_id)
        try:
            return await self._check(safety, request, job_id, key, check_id)
        finally:
            self.open_checks.owned.discard(check_id)

    async def _check(
        self,
        safety: Safety,
        request: JobRequest,
        job_id: str,
        key: tuple[int, tuple[str, ...], str],
        check_id: str,
    ) -> HeldFor | None:
        """Run the check upstream, written down first: a stop cannot lose its charge."""
        who, labels = request.requester, key[1]
        try:
            if safety.upstream is None:  # the OpenAI lane with no CIVITAI_TOKEN
                raise PremoderationFailed(
                    "no upstream service can check prompts here", alert=NO_UPSTREAM
                )
            with contextlib.suppress(StoreBusy):  # refused: kept in memory as before
                await safety.store.open_check(who.guild_id, who.member_id, job_id, check_id)
            verdict = await safety.upstream.premoderate(check_id, request.options.prompt, labels)
        except PremoderationFailed as exc:
            if exc.alert is not None:
                await self.parts.alert(*exc.alert)
            # Decided now, by the guild's settings now: an admin may have changed the
            # fallback (or switched the check off) while the check ran.
            now = await safety.store.settings(who.guild_id)
            hold = now.premoderation and now.premoderation_fallback == "hold"
            log.warning(
                "job %s: pre-moderation failed (%s); %s",
                job_id,
                exc,
                "holding it for review" if hold else "letting it through",
            )
            failed: dict[str, Any] = {"cost": exc.cost, "outcome": "failed", "error": str(exc)}
            if safety.upstream is not None:
                failed["check_id"] = check_id
            try:
                await safety.store.record_check(who.guild_id, who.member_id, job_id, **failed)
            except StoreBusy:
                # Paid for, or perhaps (cost not known): kept to record once the database
                # takes it, which writes the check down to be read again if need be.
                if exc.cost != 0:
                    self._unrecorded.append((who.guild_id, who.member_id, job_id, failed))
                raise
            if not hold:
                return None
            return HeldFor(
                f"AI pre-moderation could not check this prompt ({exc}); held for review",
                PREMODERATION,
                {"error": str(exc), "fallback": "hold"},
            )
        found = held_for(verdict) if verdict.flagged else None
        record: dict[str, Any] = {
            "cost": verdict.cost,
            "outcome": "flagged" if verdict.flagged else "clean",
            "labels": list(verdict.labels),
            "check_id": check_id,
        }
        # Kept before it is recorded: asked again after the database refused the record, the
        # check is not paid for again, and its cost is recorded then (once: a request reusing
        # it while this record is on its way records nothing of it).
        kept = self._verdicts[key] = Verdict(time.monotonic(), found)
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > VERDICTS_KEPT:
            self._verdicts.popitem(last=False)
        try:
            await safety.store.record_check(who.guild_id, who.member_id, job_id, **record)
        except StoreBusy:
            kept.unrecorded = record
            raise
        return found


def failure_key(request: JobRequest, settings: SafetySettings) -> FailureKey | None:
    """None for a request not checked before an enhancement: it has no failed check to take."""
    if request.precheck_id is None:
        return None
    who = request.requester
    digest = hashlib.sha256(request.options.prompt.encode()).hexdigest()
    labels = tuple(settings.premoderation_labels or ())
    return (request.precheck_id, who.guild_id, who.member_id, labels, digest)


def held_for(verdict: PreVerdict) -> HeldFor:
    """The review item of a flagged prompt: the labels, their scores, the model's reasons."""
    found = ", ".join(f"{label} ({verdict.scores.get(label, 0):.2f})" for label in verdict.labels)
    return HeldFor(
        f"AI pre-moderation flagged: {found or 'the prompt'}",
        PREMODERATION,
        {
            "labels": list(verdict.labels),
            "scores": verdict.scores,
            "reasons": {k: v for k, v in verdict.reasons.items() if v},
        },
    )
