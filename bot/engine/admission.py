"""Admission: every check a request must pass, in DESIGN.md's order, then its Buzz held and the
job stored in one transaction — or a Refusal, with nothing held.

The guild's settings are read once per check and the catalog request built once: `preflight`
returns them in its Quote, and `admit` reuses them when the sources did not change since (a
/create); an edit is validated again with the prepared sources, whose real sizes may price it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from bot.catalog import CatalogError
from bot.catalog.replacement import retired_text
from bot.catalog.tools import Tool
from bot.engine.lane import LaneRequest, OperatorProblem
from bot.engine.parts import J, Parts
from bot.engine.requests import (
    JobRequest,
    Refusal,
    RefusalReason,
    Requester,
    require_confirmation,
)
from bot.engine.screening import Screening
from bot.store.db import Conn
from bot.store.guilds import GuildSettings
from bot.store.jobs import SOURCE_REF, JobRecord, NewJob
from bot.store.ledger import BudgetExhausted, InsufficientBuzz

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quote:
    request: LaneRequest
    estimate: int
    balance: int
    needs_confirmation: bool = False
    # What the checks read, for admission to reuse (not compared: a snapshot).
    settings: GuildSettings | None = None
    # With `civitai.whatif` on: the orchestrator's price, asked under the job id admission then
    # uses (a whatif claims its id upstream, so it is asked once per job).
    job_id: str | None = None
    whatif: int | None = None

    @property
    def hold(self) -> int:
        """What the member is shown and what is held: the higher of the two prices."""
        return max(self.estimate, self.whatif or 0)

    @property
    def balance_after(self) -> int:
        return self.balance - self.hold


def new_job_id(now: datetime) -> str:
    """Sortable, and valid as an orchestrator externalId ([A-Za-z0-9_-], ≤ 128)."""
    return f"j{int(now.timestamp() * 1000):011x}{secrets.token_hex(3)}"


def check_concurrency(
    mine: int, theirs: int, settings: GuildSettings, *, member_id: int | None = None
) -> None:
    """The member's and the server's limits on jobs running at once. Worded for the member
    who asks, or (`member_id`) for a moderator starting that member's held job."""
    if mine >= settings.per_member_concurrency:
        limit = settings.per_member_concurrency
        if member_id is None:
            text = f"you already have {mine} job(s) running; the limit here is {limit}"
        else:
            text = (
                f"<@{member_id}> already has {mine} job(s) running, the limit here is {limit}; "
                "approve this again once one has ended"
            )
        raise Refusal(RefusalReason.MEMBER_BUSY, text)
    if theirs >= settings.per_guild_concurrency:
        again = "try again" if member_id is None else "approve this again"
        raise Refusal(
            RefusalReason.GUILD_BUSY,
            f"the server already has {theirs} jobs running (its limit); {again} in a minute",
        )


def check_money_in(conn: Conn, parts: Parts, who: Requester, price: int, s: GuildSettings) -> int:
    """The member's balance (this period's refill included), then the guild's budget, before
    the job limits (DESIGN.md's order): one who cannot afford it is not sent to try again in a
    minute. What the member has."""
    balance = parts.ledger.balance_in(conn, who.guild_id, who.member_id, who.roles)
    if balance.available < price:
        now = parts.clock()
        raise InsufficientBuzz(
            price, balance.available, balance.allowance, balance.next_refill, now
        )
    parts.ledger.check_budget_in(conn, who.guild_id, price, s.budget_amount, s.budget_period)
    return balance.available


def check_one_image_in(tx: Conn, parts: Parts, parent_job_id: str | None) -> None:
    """A prompt enhancement starts one image: two choices (or two confirmations after them)
    must not admit two, whatever order their clicks arrive in."""
    if parent_job_id is None:
        return
    parent = parts.jobs.job_in(tx, parent_job_id)
    if parent is None or parent.model != Tool.ENHANCE.value:
        return
    child = parts.jobs.child_in(tx, parent_job_id)
    if child is not None:
        raise Refusal(
            RefusalReason.ALREADY_STARTED,
            f"an image was already started from this prompt enhancement (job `{child}`)",
        )


class Admission:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.screening = Screening(parts)

    def validate(self, request: JobRequest) -> LaneRequest:
        """The lane's request for what the member asked, sources referenced as source://N."""
        sources = [s for s in request.sources if s.role == "image"]
        mask = next((s for s in request.sources if s.role == "mask"), None)
        refs = tuple(f"{SOURCE_REF}{i}" for i, s in enumerate(request.sources) if s.role == "image")
        mask_ref = f"{SOURCE_REF}{request.sources.index(mask)}" if mask is not None else None
        options = request.options
        if request.sources:
            options = options.with_sources(refs, mask_ref)
        # Sizes may be Discord's declared ones (before download); unknown means unknown.
        input_size = (
            (sources[0].width, sources[0].height)
            if sources and sources[0].width and sources[0].height
            else None
        )
        try:
            return self.parts.lane.validate(request, options, input_size)
        except CatalogError as exc:
            raise Refusal(RefusalReason.INVALID, str(exc), errors=exc.errors) from None

    async def preflight(self, request: JobRequest) -> Quote:
        """Every admission check, in order, without holding anything: Refusal, or the quote.

        Lets the front end answer within Discord's 3 seconds (sources may be described by their
        declared sizes only) and ask for a confirmation. `admit` checks everything again,
        atomically, when it holds the Buzz.
        """
        parts, who = self.parts, request.requester
        settings, validated = await self._precheck(request)
        # The price the member is shown, asks to confirm and has to afford is what is held:
        # with whatif on, the orchestrator's figure when it is higher than the local one.
        job_id = new_job_id(parts.clock()) if parts.settings.whatif else None
        whatif = await self._whatif(job_id, validated, request) if job_id else None
        price = max(validated.buzz, whatif or 0)
        needs_confirmation = price > settings.confirm_above and not request.confirmed

        def check(conn: Conn) -> int:
            available = check_money_in(conn, parts, who, price, settings)
            check_concurrency(*parts.jobs.in_flight_in(conn, who.guild_id, who.member_id), settings)
            return available

        try:
            available = await parts.db.read(check)
        except InsufficientBuzz as exc:
            raise Refusal(RefusalReason.BALANCE, str(exc), buzz=price, balance=exc.have) from None
        except BudgetExhausted as exc:
            raise Refusal(RefusalReason.BUDGET, str(exc), buzz=price) from None
        return Quote(
            validated, validated.buzz, available, needs_confirmation, settings, job_id, whatif
        )

    async def _precheck(
        self, request: JobRequest, quote: Quote | None = None
    ) -> tuple[GuildSettings, LaneRequest]:
        """Admission checks that need no transaction, in DESIGN.md's order."""
        parts, who = self.parts, request.requester
        ban = await parts.moderation.active_ban(who.guild_id, who.member_id)
        if ban is not None:
            until = f" until {ban.expires_at:%Y-%m-%d %H:%M} UTC" if ban.expires_at else ""
            raise Refusal(RefusalReason.BANNED, f"you are banned from using the bot here{until}")
        settings = quote.settings if quote and quote.settings else None
        settings = settings or await parts.guilds.settings(who.guild_id)
        if not settings.channel_allowed(who.channel_id, who.parent_channel_id):
            raise Refusal(RefusalReason.CHANNEL, "image commands are not allowed in this channel")
        if request.model.value in settings.retired_models:
            raise Refusal(
                RefusalReason.MODEL_DISABLED,
                retired_text(request.model.value, request.operation, settings.model_enabled),
            )
        if not settings.model_enabled(request.model.value):
            raise Refusal(
                RefusalReason.MODEL_DISABLED,
                f"{request.model.value} is switched off on this server",
            )
        reuse = quote is not None and not request.sources
        return settings, quote.request if quote is not None and reuse else self.validate(request)

    async def admit(self, request: JobRequest, quote: Quote | None = None) -> tuple[JobRecord, int]:
        """Hold the request's Buzz and store the job, queued (or held for review, with its
        review item): (the job, the review item id or 0). Raises Refusal."""
        parts, who = self.parts, request.requester
        settings, validated = await self._precheck(request, quote)
        now = parts.clock()
        if quote is not None and quote.job_id is not None and validated is quote.request:
            # The request the member was quoted (and confirmed): its whatif stands.
            job_id, whatif = quote.job_id, quote.whatif
        else:
            job_id = new_job_id(now)
            whatif = (
                await self._whatif(job_id, validated, request) if parts.settings.whatif else None
            )
        hold_amount = max(validated.buzz, whatif or 0)
        require_confirmation(
            hold_amount, settings.confirm_above, request.confirmed, request.confirmed_buzz
        )
        held_reason = None
        if parts.prompt_filter is not None:
            held_reason = await parts.prompt_filter(who.guild_id, request.options.prompt)
        # The channel's level; edit sources rated above it refused; AI pre-moderation.
        screened = await self.screening.screen(request, job_id, held_reason)
        held = screened.held
        new = NewJob(
            id=job_id,
            guild_id=who.guild_id,
            channel_id=who.channel_id,
            member_id=who.member_id,
            model=request.model.value,
            operation=request.operation.value,
            options=request.options.as_dict(),
            step=validated.step(),
            estimate=validated.buzz,
            status=J.HELD if held else J.QUEUED,
            whatif=whatif,
            interaction_token=request.interaction.token if request.interaction else None,
            interaction_expires_at=request.interaction.expires_at if request.interaction else None,
            parent_job_id=request.parent_job_id,
            simulated=parts.settings.simulated,
            deadline_at=now + parts.settings.deadline,
            upload_limit=request.upload_limit,
            max_rating=screened.max_rating,
        )

        def store(tx: Conn) -> tuple[JobRecord, int]:
            check_one_image_in(tx, parts, request.parent_job_id)  # a second click: say so
            check_money_in(tx, parts, who, hold_amount, settings)
            check_concurrency(*parts.jobs.in_flight_in(tx, who.guild_id, who.member_id), settings)
            parts.jobs.insert_in(tx, new, request.sources)
            parts.ledger.place_hold_in(
                tx, who.guild_id, who.member_id, job_id, hold_amount, who.roles
            )
            item_id = held.open_in(parts.moderation, tx, who.guild_id, job_id) if held else 0
            job = parts.jobs.job_in(tx, job_id)
            assert job is not None
            return job, item_id

        try:
            return await parts.db.write(store)
        except InsufficientBuzz as exc:
            raise Refusal(
                RefusalReason.BALANCE, str(exc), buzz=hold_amount, balance=exc.have
            ) from None
        except BudgetExhausted as exc:
            raise Refusal(RefusalReason.BUDGET, str(exc), buzz=hold_amount) from None

    async def _whatif(self, job_id: str, validated: LaneRequest, request: JobRequest) -> int | None:
        try:
            return await self.parts.lane.whatif(job_id, validated.step(), request.sources)
        except OperatorProblem as exc:
            await self.parts.alert("auth", str(exc))
            raise Refusal(
                RefusalReason.UPSTREAM,
                "the bot cannot place orders with the image service right now; the operator "
                "has been told",
            ) from None
