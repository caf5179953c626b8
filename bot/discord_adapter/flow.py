"""The path every image request takes through Discord (slash command, button or modal).

1. Within Discord's 3 seconds: check the attachments from their metadata and run every
   admission check (engine.preflight) — a refusal is an ephemeral message naming the option;
   nothing is held.
2. Above the guild's threshold: an ephemeral Confirm / Cancel first.
3. A private "thinking…" first; the sources are downloaded, decoded and prepared, and the
   engine admits the job (holds its Buzz). A problem found only now is a private answer:
   nothing was held and nothing public was posted. Admitted, the job gets its public status
   message (with Cancel), and only then runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import discord

from bot.catalog import Model, Operation, RequestOptions
from bot.discord_adapter.access import requester
from bot.discord_adapter.asked import Asked, image_bytes
from bot.discord_adapter.buttons.confirm import confirm_view
from bot.discord_adapter.earlier_posts import earlier_status
from bot.discord_adapter.interaction import think
from bot.discord_adapter.replies import UserFacingError, media_text, reply
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.engine.admission import Quote
from bot.engine.requests import InteractionToken, JobRequest, Refusal, RefusalReason
from bot.media.attachments import check_declared, check_declared_for
from bot.media.intake import declared_source, prepare_attachments
from bot.media.limits import AttachmentInfo, MediaError
from bot.store.jobs import JobRecord, JobStatus, SourceImage

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

log = logging.getLogger(__name__)

CONFIRM_TTL = 600.0
EXPIRED = "This confirmation has expired; run the command again. Nothing was charged."
NOT_YOURS = "Only the member who asked can confirm this."
HANDLING = "Your click on this is already being handled; see the answer above."


@dataclass(frozen=True)
class Pending:
    request: JobRequest
    attachments: tuple[AttachmentInfo, ...]
    # Sources already in hand (a re-roll reuses its parent's): nothing to download.
    sources: tuple[SourceImage, ...] | None
    quote: Quote


class RequestFlow:
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.engine = bot.engine
        self.services = bot.services
        self.asked: Asked[Pending] = Asked(
            bot.questions,
            "confirm",
            CONFIRM_TTL,
            EXPIRED,
            NOT_YOURS,
            size=lambda p: image_bytes(p.sources, p.request.sources),
        )
        # (button, member) clicks still being answered: see `once`.
        self._handling: set[tuple[str, int]] = set()

    @contextlib.contextmanager
    def once(self, button: str, member_id: int) -> Iterator[None]:
        """One answer at a time to a member's clicks of one button (a Re-roll): a double click
        would otherwise admit two paid jobs. A click while the first is being answered is told
        so; once that is answered, a click is a new request."""
        key = (button, member_id)
        if key in self._handling:
            raise UserFacingError(HANDLING)
        self._handling.add(key)
        try:
            yield
        finally:
            self._handling.discard(key)

    async def begin(
        self,
        interaction: discord.Interaction,
        model: Model,
        operation: Operation,
        options: RequestOptions,
        attachments: list[AttachmentInfo] | None = None,
        *,
        sources: list[SourceImage] | None = None,
        parent_job_id: str | None = None,
        enhance: bool = False,
    ) -> None:
        """`enhance`: once the request passes its checks, its prompt is enhanced first and
        the member chooses which prompt to use (enhance.py)."""
        attachments = attachments or []
        try:
            for info in attachments:
                check_declared(info, self.bot.media_limits)
            if operation is Operation.EDIT:
                check_declared_for(model, attachments)
        except MediaError as exc:
            await reply(interaction, media_text(exc))
            return
        who = await requester(interaction, self.services.guilds)
        declared = sources or [declared_source(info) for info in attachments]
        request = JobRequest(
            who, model, operation, options, sources=tuple(declared), parent_job_id=parent_job_id
        )
        if enhance:  # checked before it is enhanced: that check is this request's alone
            request = self.engine.precheck(request)
        if self.engine.settings.whatif and not interaction.response.is_done():
            # The price is asked of the orchestrator: Discord's 3 seconds may not be enough.
            await think(interaction)
        try:
            quote = await self.engine.preflight(request)
        except Refusal as refusal:
            await self.bot.offers.refused(
                interaction,
                request,
                refusal,
                attachments=tuple(attachments),
                sources=tuple(sources) if sources else None,
                enhance=enhance,
            )
            return
        pending = Pending(
            request,
            tuple(attachments),
            tuple(sources) if sources else None,
            quote,
        )
        # A prompt the filter holds, or AI pre-moderation flags, goes to the moderators as the
        # member wrote it: it is not sent upstream to be enhanced (and charged for) first.
        if enhance and not interaction.response.is_done():
            await think(interaction)  # the check may outlast Discord's 3 seconds
        if enhance and not await self.engine.held_before_upstream(request):
            await self.bot.enhance.begin(interaction, pending)
            return
        if quote.needs_confirmation:
            await self._ask(interaction, pending)
            return
        await self.start(interaction, pending)

    # -- confirmation -----------------------------------------------------------------------
    async def _question(
        self, interaction: discord.Interaction, pending: Pending
    ) -> tuple[str, str, discord.ui.View]:
        token = await self.asked.put(pending.request.requester.member_id, pending, interaction)
        quote = pending.quote
        text = (
            f"This {pending.request.model.value} request costs **{quote.hold:,} Buzz**; your "
            f"balance after it would be {quote.balance_after:,}. Go ahead?"
        )
        return token, text, confirm_view(token)

    async def _ask(self, interaction: discord.Interaction, pending: Pending) -> None:
        token, text, view = await self._question(interaction, pending)
        if interaction.response.is_done():  # a choice or an offer answered its click first
            message = await interaction.followup.send(text, view=view, ephemeral=True, wait=True)
            await self.asked.posted(token, message)
        else:
            await interaction.response.send_message(text, view=view, ephemeral=True)
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
        # The settings are read again: an admin may have switched the model off or refused
        # the channel while the question waited (up to CONFIRM_TTL).
        quote = replace(pending.quote, settings=None)
        confirmed = replace(pending.request, confirmed=True)
        await self.start(interaction, replace(pending, request=confirmed, quote=quote))

    # -- the job ----------------------------------------------------------------------------
    async def start(self, interaction: discord.Interaction, pending: Pending) -> None:
        """Admit the job privately first, then show it publicly. The first answer is a private
        "thinking…": a request refused only now (a damaged file, a balance spent meanwhile)
        leaves nothing behind in the channel. Admitted, it gets its public status message,
        and only then starts, so its results never come before it."""
        if not interaction.response.is_done():
            await think(interaction)
        try:
            sources = pending.sources or ()
            if not sources and pending.attachments:
                async with self.bot.preparing.one(
                    pending.request.requester, pending.quote.settings
                ):
                    await _tell(interaction, "⏳ Checking your images…")
                    sources = tuple(
                        await prepare_attachments(
                            self.services.downloads,
                            pending.attachments,
                            pending.request.model,
                            self.bot.media_limits,
                            self.services.images,
                        )
                    )
            job = await self.engine.submit(
                replace(
                    pending.request,
                    sources=sources,
                    confirmed=True,
                    confirmed_buzz=pending.quote.hold,
                    interaction=InteractionToken(interaction.token, interaction.expires_at),
                    upload_limit=interaction.filesize_limit,
                ),
                launch=False,
                quote=pending.quote,
            )
        except MediaError as exc:
            await _tell(interaction, media_text(exc))
            return
        except Refusal as refusal:
            if refusal.reason is RefusalReason.CONFIRM and refusal.buzz is not None:
                await self._ask_again(interaction, pending, sources, refusal.buzz)
                return
            await self.bot.offers.refused(
                interaction,
                pending.request,
                refusal,
                attachments=pending.attachments,
                sources=pending.sources,
                edit=True,
            )
            return
        held = f"{job.hold_amount or job.estimate:,} Buzz held"
        started = (
            f"⏸️ Waiting for a moderator's review before it runs; {held}."
            if job.status is JobStatus.HELD
            else f"✅ Started: {held}."
        )
        await _tell(interaction, started)
        embed, view = await self.bot.publisher.first_status(job, pending.quote.request.warnings)
        await show_and_launch(self.bot, interaction, job, embed, view)

    async def _ask_again(
        self,
        interaction: discord.Interaction,
        pending: Pending,
        sources: tuple[SourceImage, ...],
        price: int,
    ) -> None:
        """Priced higher at admission than the member was shown (an edit the orchestrator
        priced from its images, known only once they were in): nothing was held; the member
        is asked for that price, the images kept for the answer."""
        quote = replace(pending.quote, whatif=price, job_id=None, settings=None)
        again = replace(pending, sources=sources or pending.sources, quote=quote)
        _, text, view = await self._question(interaction, again)
        await _tell(interaction, f"The price changed once your images were checked. {text}", view)
        view.stop()


async def show_and_launch(
    bot: ImageBot,
    interaction: discord.Interaction,
    job: JobRecord,
    embed: discord.Embed,
    view: discord.ui.View,
) -> None:
    """Post an admitted job's public status message, then run the job. It is paid for: it
    runs whatever Discord answers (a dropped connection too: else it waits for the
    reconciler, the member told that "nothing was charged")."""
    try:
        message = await interaction.followup.send(embed=embed, view=view, wait=True)
        view.stop()
    except discord.HTTPException as exc:
        log.warning("job %s: status message not posted (%s); starting anyway", job.id, exc)
        await bot.engine.launch(job)
        return
    except NETWORK_ERRORS as exc:
        # Its answer was lost, not the post perhaps: a status message left in the channel
        # unknown to the bot would say "Queued" for good, with a Cancel that does nothing.
        found = await earlier_status(bot, bot.publisher.routes, job)
        log.warning(
            "job %s: no answer to its status message's post (%s); %s",
            job.id,
            type(exc).__name__,
            "it was posted" if found else "starting without it",
        )
        await bot.engine.launch(job, found)
        return
    await bot.engine.launch(job, message.id)


async def _tell(
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
