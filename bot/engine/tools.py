"""Jobs that are not image generations: Upscale and Remove background on a posted result, and
the prompt enhancement that may run before an image. Each is one orchestrator step, admitted
like an image request — member checks, the guild's switch for the tool, a confirmation above the
guild's threshold, balance, budget and concurrency — with its Buzz held and the job stored in
one transaction; then driven, settled and delivered by the same driver as every job.

These steps have no price table: the hold is the orchestrator's whatif figure, always asked
(whatever `civitai.whatif` says), and the documented local estimate (bot.catalog.tools) only
when the whatif cannot be had. The charge is what the workflow's transactions say.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.catalog.tools import IMAGE_TOOLS, Tool, largest_result_bytes
from bot.engine.admission import check_concurrency, check_money_in, new_job_id
from bot.engine.lane import OperatorProblem
from bot.engine.parts import EngineSettings, J, Parts
from bot.engine.requests import (
    InteractionToken,
    Refusal,
    RefusalReason,
    Requester,
    require_confirmation,
)
from bot.store.db import Conn
from bot.store.guilds import GuildSettings
from bot.store.jobs import JobRecord, NewJob, SourceImage
from bot.store.ledger import BudgetExhausted, InsufficientBuzz

log = logging.getLogger(__name__)

SOURCE_GONE = "that image is no longer shown here, so it cannot be taken further"


@dataclass(frozen=True)
class ToolRequest:
    requester: Requester
    tool: Tool
    # The step as stored: a posted result is named result://JOB/N (the lane resolves it).
    step: dict[str, Any]
    # The local estimate (the fallback price).
    estimate: int
    # What the member sees of it (the source's prompt, which image...).
    options: dict[str, Any]
    # The bytes the bot posted (sent when the orchestrator's own URL cannot be).
    sources: tuple[SourceImage, ...] = ()
    parent_job_id: str | None = None
    # The message the result will answer.
    reply_to: int | None = None
    confirmed: bool = False
    interaction: InteractionToken | None = None
    upload_limit: int | None = None
    # The size of the image the step will make (an upscale's is larger than its source).
    result_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class ToolQuote:
    job_id: str
    hold: int
    estimate: int
    whatif: int | None
    balance: int
    needs_confirmation: bool
    settings: GuildSettings

    @property
    def balance_after(self) -> int:
        return self.balance - self.hold


def check_not_started_in(conn: Conn, parts: Parts, request: ToolRequest) -> None:
    """One press, one job: a member's second Upscale (or cut-out) of the same image while the
    first is still under way is a double click, not a wish to pay twice for the same result.
    Checked again in the admitting transaction, so two presses arriving together admit one."""
    if request.tool not in IMAGE_TOOLS or request.parent_job_id is None:
        return
    image = request.options.get("image")
    who = request.requester
    earlier = parts.jobs.same_tool_active_in(
        conn, who.member_id, request.parent_job_id, request.tool.value, image
    )
    if earlier is not None:
        raise Refusal(
            RefusalReason.ALREADY_STARTED,
            f"your {request.tool.label} of this image (job `{earlier}`) is still under way",
        )


def check_result_size(width: int, height: int, settings: EngineSettings) -> None:
    """Refuses a result the bot could not decode, or download, once charged upstream."""
    if width * height > settings.max_pixels:
        raise Refusal(
            RefusalReason.INVALID,
            f"the result would be {width}x{height}, over the "
            f"{settings.max_pixels // 1_000_000:,} megapixels this bot can post",
        )
    if largest_result_bytes(width, height) > settings.max_result_bytes:
        raise Refusal(
            RefusalReason.INVALID,
            f"the result would be {width}x{height}, a file of up to "
            f"{-(-largest_result_bytes(width, height) // 1_000_000):,} MB, over the "
            f"{settings.max_result_bytes // 1_000_000:,} MB this bot can download",
        )


class ToolAdmission:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def supports(self, tool: Tool) -> bool:
        """Whether the lane runs this step (the Civitai orchestrator does; another may not)."""
        return tool.step_type in getattr(self.parts.lane, "tool_steps", frozenset())

    async def quote(self, request: ToolRequest) -> ToolQuote:
        """Every check, and the price (the orchestrator's whatif), without holding anything."""
        parts, who = self.parts, request.requester
        settings = await self._precheck(request)
        job_id = new_job_id(parts.clock())
        whatif = await self._whatif(job_id, request.step)
        # The orchestrator's own price when it gives a usable one (a whatif of 0 or below is
        # not a price anything can be held for), else the documented local estimate.
        hold = whatif if whatif is not None and whatif > 0 else request.estimate
        needs_confirmation = hold > settings.confirm_above and not request.confirmed

        def check(conn: Conn) -> int:
            check_not_started_in(conn, parts, request)
            available = check_money_in(conn, parts, who, hold, settings)
            check_concurrency(*parts.jobs.in_flight_in(conn, who.guild_id, who.member_id), settings)
            return available

        available = await self._money(parts.db.read(check), hold)
        return ToolQuote(
            job_id, hold, request.estimate, whatif, available, needs_confirmation, settings
        )

    async def _channel_level(self, request: ToolRequest) -> str | None:
        safety = self.parts.safety
        if safety is None:
            return None
        who = request.requester
        settings = await safety.store.settings(who.guild_id)
        return settings.level_for(who.channel_id, who.parent_channel_id, who.age_restricted)

    async def admit(self, request: ToolRequest, quote: ToolQuote) -> JobRecord:
        """Hold the quoted Buzz and store the job, queued. Raises Refusal."""
        parts, who = self.parts, request.requester
        settings = await self._precheck(request)
        require_confirmation(quote.hold, settings.confirm_above, request.confirmed)
        now = parts.clock()
        new = NewJob(
            id=quote.job_id,
            # Its result goes where the image it was made from went: the same channel level.
            max_rating=await self._channel_level(request),
            guild_id=who.guild_id,
            channel_id=who.channel_id,
            member_id=who.member_id,
            model=request.tool.value,
            operation=request.tool.step_type,
            options=request.options,
            step=request.step,
            estimate=request.estimate,
            status=J.QUEUED,
            whatif=quote.whatif,
            interaction_token=request.interaction.token if request.interaction else None,
            interaction_expires_at=request.interaction.expires_at if request.interaction else None,
            parent_job_id=request.parent_job_id,
            simulated=parts.settings.simulated,
            deadline_at=now + parts.settings.deadline,
            upload_limit=request.upload_limit,
            reply_to_message_id=request.reply_to,
        )

        def store(tx: Conn) -> JobRecord:
            check_not_started_in(tx, parts, request)
            check_money_in(tx, parts, who, quote.hold, settings)
            check_concurrency(*parts.jobs.in_flight_in(tx, who.guild_id, who.member_id), settings)
            parts.jobs.insert_in(tx, new, request.sources)
            parts.ledger.place_hold_in(
                tx, who.guild_id, who.member_id, new.id, quote.hold, who.roles
            )
            job = parts.jobs.job_in(tx, new.id)
            assert job is not None
            return job

        return await self._money(parts.db.write(store), quote.hold)

    async def _money(self, work: Any, need: int) -> Any:
        try:
            return await work
        except InsufficientBuzz as exc:
            raise Refusal(RefusalReason.BALANCE, str(exc), buzz=need, balance=exc.have) from None
        except BudgetExhausted as exc:
            raise Refusal(RefusalReason.BUDGET, str(exc), buzz=need) from None

    async def _precheck(self, request: ToolRequest) -> GuildSettings:
        """The member's standing here, the channel, the guild's switch, the lane."""
        parts, who, tool = self.parts, request.requester, request.tool
        ban = await parts.moderation.active_ban(who.guild_id, who.member_id)
        if ban is not None:
            until = f" until {ban.expires_at:%Y-%m-%d %H:%M} UTC" if ban.expires_at else ""
            raise Refusal(RefusalReason.BANNED, f"you are banned from using the bot here{until}")
        settings = await parts.guilds.settings(who.guild_id)
        if not settings.channel_allowed(who.channel_id, who.parent_channel_id):
            raise Refusal(RefusalReason.CHANNEL, "image commands are not allowed in this channel")
        if tool.value in settings.retired_models:
            raise Refusal(
                RefusalReason.MODEL_DISABLED,
                f"{tool.label} is not available from the orchestrator right now; an admin "
                "has been told",
            )
        if not settings.model_enabled(tool.value):
            raise Refusal(
                RefusalReason.MODEL_DISABLED, f"{tool.label} is switched off on this server"
            )
        if not self.supports(tool):
            raise Refusal(
                RefusalReason.MODEL_DISABLED, f"{tool.label} is not offered by this bot's service"
            )
        if tool in IMAGE_TOOLS:
            await self._check_shown(request)
        if request.result_size is not None:
            check_result_size(*request.result_size, parts.settings)
        return settings

    async def _check_shown(self, request: ToolRequest) -> None:
        """An upscale or cut-out is a new public image of its source: only of a result that is
        still shown as the bot posted it — not one kept from its channel or under review."""
        parts = self.parts
        parent = await parts.jobs.job(request.parent_job_id) if request.parent_job_id else None
        # A result still being posted (part 1 up, part 2 uploading or waiting out a 429) is
        # shown already: its posted messages are recorded only when the whole delivery is.
        posting = parent is not None and parent.status is J.DELIVERING
        shown = parent is not None and (
            posting
            or (
                parent.status is J.DONE
                and (request.reply_to is None or request.reply_to in parent.delivered_message_ids)
            )
        )
        if shown and parent is not None:
            item = await parts.moderation.item_for_job(parent.id)
            # An undelivered item is about the charge of images that never showed, not these.
            shown = item is None or not item.open or item.kind == "undelivered"
        if not shown:
            raise Refusal(RefusalReason.SOURCE_GONE, SOURCE_GONE)

    async def _whatif(self, job_id: str, step: dict[str, Any]) -> int | None:
        try:
            return await self.parts.lane.whatif(job_id, step)
        except OperatorProblem as exc:
            await self.parts.alert("auth", str(exc))
            raise Refusal(
                RefusalReason.UPSTREAM,
                "the bot cannot place orders with the image service right now; the operator "
                "has been told",
            ) from None
