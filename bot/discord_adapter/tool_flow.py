"""Upscale and Remove background through Discord: a result's button (or, on a result with
several images, the modal that asks which) becomes a job of its own, paid by whoever clicks.

1. A private "thinking…" first: the image the bot posted is fetched back (the bytes sent when
   the orchestrator's own URL cannot be) and the job is priced by the orchestrator's whatif.
   A refusal is a private answer; nothing is held.
2. Above the guild's threshold: a private Confirm / Cancel with the price.
3. The job is admitted (its Buzz held), gets its public status message with Cancel, and runs;
   its result is posted as a reply to the image it came from.

The pending confirmations (and the enhancement flow's) are kept here for ten minutes, in the
database: a click after a restart is answered as before it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import discord

from bot.catalog.tools import (
    UPSCALE_FACTOR,
    Tool,
    background_step,
    describe,
    estimate,
    result_ref,
    upscale_step,
)
from bot.discord_adapter.access import requester
from bot.discord_adapter.asked import Asked, image_bytes
from bot.discord_adapter.attachments import attachment_info
from bot.discord_adapter.buttons.tools import tool_confirm_view
from bot.discord_adapter.flow import show_and_launch
from bot.discord_adapter.interaction import think
from bot.discord_adapter.replies import media_text, refusal_text
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.engine.requests import InteractionToken, Refusal, RefusalReason, Requester
from bot.engine.tools import SOURCE_GONE, ToolQuote, ToolRequest
from bot.media.limits import MediaError
from bot.media.posted import posted_source
from bot.store.jobs import JobRecord, SourceImage

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

log = logging.getLogger(__name__)

CONFIRM_TTL = 600.0
EXPIRED = "This confirmation has expired; try again. Nothing was charged."
NOT_YOURS = "Only the member who asked can confirm this."
Starter = Callable[[discord.Interaction, ToolRequest, ToolQuote], Awaitable[None]]


@dataclass(frozen=True)
class ToolPending:
    request: ToolRequest
    quote: ToolQuote
    # What a Confirm starts: "tool" (ToolFlow.start) or "enhance" (EnhanceFlow.start); a name,
    # as the question is stored.
    starter: str


def image_index(job: JobRecord, attachment: discord.Attachment, position: int) -> int:
    """Which of the job's images an attachment is: its file is named {job}-{n}.{ext}."""
    found = re.fullmatch(rf"{re.escape(job.id)}-(\d+)\.\w+", attachment.filename)
    return int(found[1]) - 1 if found else position


def tool_request(
    who: Requester,
    tool: Tool,
    parent: JobRecord,
    index: int,
    source: SourceImage,
    *,
    reply_to: int | None,
    upscaler_model: str | None,
) -> ToolRequest:
    """What the member asked: `tool` on image `index` of `parent`, as the bot posted it."""
    ref = result_ref(parent.id, index)
    options: dict[str, object] = {"prompt": parent.prompt, "image": index + 1}
    # Priced (when the whatif cannot be had) from the largest image the step may be sent.
    width, height = sent_size(parent, index, source)
    # What the step makes (a cut-out keeps the size): its file must be one the bot can fetch.
    result_size = (width, height) if width and height else None
    if tool is Tool.UPSCALE:
        step = upscale_step(ref, model=upscaler_model)
        options["repeats"] = step["input"]["numberOfRepeats"]
        result_size = upscaled_size(parent, index, source, step["input"]["numberOfRepeats"])
    else:
        step = background_step(ref)
        options["format"] = step["input"]["format"]
    return ToolRequest(
        requester=who,
        tool=tool,
        step=step,
        estimate=estimate(tool, width or None, height or None),
        options=options,
        sources=(source,),
        parent_job_id=parent.id,
        reply_to=reply_to,
        result_size=result_size,
    )


def sent_size(parent: JobRecord, index: int, source: SourceImage) -> tuple[int, int]:
    """The size of the largest image a tool's step may be sent: the orchestrator's original
    (the posted copy may have been scaled down to fit Discord). An original of unknown size
    is not sent an upscale, nor a job held at this estimate (bot/civitai/tool_sources.py): the
    posted copy is, so its size. 0: unknown."""
    images = parent.result_images
    original = images[index] if index < len(images) else {}
    width = int(original.get("width") or source.width or 0)
    height = int(original.get("height") or source.height or 0)
    return width, height


def upscaled_size(
    parent: JobRecord, index: int, source: SourceImage, repeats: int
) -> tuple[int, int] | None:
    """What an upscale of the image may measure: each side doubled per repeat."""
    width, height = sent_size(parent, index, source)
    if not width or not height:
        return None
    factor = UPSCALE_FACTOR**repeats
    return width * factor, height * factor


class ToolFlow:
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.asked: Asked[ToolPending] = Asked(
            bot.questions,
            "tool",
            CONFIRM_TTL,
            EXPIRED,
            NOT_YOURS,
            size=lambda p: image_bytes(p.request.sources),
        )

    async def begin(
        self,
        interaction: discord.Interaction,
        tool: Tool,
        parent: JobRecord,
        attachment: discord.Attachment,
        position: int,
        *,
        reply_to: int | None,
    ) -> None:
        bot = self.bot
        if not interaction.response.is_done():
            await think(interaction)
        try:
            who = await requester(interaction, bot.services.guilds)
            info = attachment_info("image", attachment, own=True)  # a result it posted
            async with bot.preparing.one(who, None):
                source = await posted_source(
                    bot.services.downloads, info, bot.media_limits, bot.services.images
                )
            request = tool_request(
                who,
                tool,
                parent,
                image_index(parent, attachment, position),
                source,
                reply_to=reply_to,
                upscaler_model=bot.services.settings.civitai.upscaler_model,
            )
            quote = await bot.engine.tools.quote(request)
        except (MediaError, Refusal) as exc:
            await tell(interaction, refused_text(exc))
            return
        await self.confirm_or_start(interaction, request, quote, "tool")

    async def confirm_or_start(
        self,
        interaction: discord.Interaction,
        request: ToolRequest,
        quote: ToolQuote,
        starter: str,
    ) -> None:
        """`starter`: "tool" or "enhance" (see ToolPending)."""
        if not quote.needs_confirmation:
            await self._starter(starter)(interaction, request, quote)
            return
        pending = ToolPending(request, quote, starter)
        token = await self.asked.put(request.requester.member_id, pending, interaction)
        view = tool_confirm_view(token)
        what = describe(request.tool, request.options)
        await tell(
            interaction,
            f"{what} costs **{quote.hold:,} Buzz**; your balance after it would be "
            f"{quote.balance_after:,}. Go ahead?",
            view,
        )
        view.stop()

    async def answer(self, interaction: discord.Interaction, token: str, yes: bool) -> None:
        pending = await self.asked.take(token, interaction.user.id)
        if not yes:
            await self.asked.reply(
                interaction, token, pending, content="Canceled. Nothing was charged.", view=None
            )
            return
        confirmed_text = f"Confirmed: {pending.quote.hold:,} Buzz."
        await self.asked.reply(interaction, token, pending, content=confirmed_text, view=None)
        start = self._starter(pending.starter)
        await start(interaction, replace(pending.request, confirmed=True), pending.quote)

    def _starter(self, name: str) -> Starter:
        return self.bot.enhance.start if name == "enhance" else self.start

    async def admit(
        self, interaction: discord.Interaction, request: ToolRequest, quote: ToolQuote
    ) -> JobRecord | None:
        """Hold the Buzz and store the job (None: refused, and the member was told)."""
        if not interaction.response.is_done():
            await think(interaction)
        if not await still_posted(interaction, request.reply_to):
            await tell(interaction, refusal_text(Refusal(RefusalReason.SOURCE_GONE, SOURCE_GONE)))
            return None
        try:
            return await self.bot.engine.tools.admit(
                replace(
                    request,
                    confirmed=True,
                    interaction=InteractionToken(interaction.token, interaction.expires_at),
                    upload_limit=interaction.filesize_limit,
                ),
                quote,
            )
        except Refusal as refusal:
            await tell(interaction, refusal_text(refusal))
            return None

    async def start(
        self, interaction: discord.Interaction, request: ToolRequest, quote: ToolQuote
    ) -> None:
        """Admitted privately first, then shown publicly (with Cancel), then run."""
        job = await self.admit(interaction, request, quote)
        if job is None:
            return
        await tell(interaction, f"✅ Started: {job.hold_amount or quote.hold:,} Buzz held.")
        embed, view = await self.bot.publisher.first_status(job)
        await show_and_launch(self.bot, interaction, job, embed, view)


async def still_posted(interaction: discord.Interaction, message_id: int | None) -> bool:
    """Whether the image a tool answers is still there: it may have been deleted (by its
    member or a moderator) while a confirmation or the modal waited. Unknown counts as there."""
    channel = interaction.channel
    if message_id is None or not isinstance(channel, discord.abc.Messageable):
        return True
    try:
        await channel.fetch_message(message_id)
    except discord.NotFound:
        return False
    except discord.HTTPException as exc:
        log.info("message %s: not checked before a tool (%s)", message_id, exc.status)
    except (discord.RateLimited, *NETWORK_ERRORS) as exc:  # unknown counts as there
        log.info("message %s: not checked before a tool (%s)", message_id, type(exc).__name__)
    return True


def refused_text(exc: MediaError | Refusal) -> str:
    return refusal_text(exc) if isinstance(exc, Refusal) else media_text(exc)


async def tell(
    interaction: discord.Interaction, text: str, view: discord.ui.View | None = None
) -> None:
    """Replace the private answer (the "thinking…" or the confirmation) with `text`."""
    try:
        await interaction.edit_original_response(content=text, embed=None, view=view)
    except discord.HTTPException as exc:
        log.info("could not answer interaction %s privately (%s)", interaction.id, exc.status)
    except NETWORK_ERRORS as exc:
        log.warning(
            "could not answer interaction %s privately (%s)", interaction.id, type(exc).__name__
        )
