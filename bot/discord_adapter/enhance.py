"""Prompt enhancement before an image (`enhance:True` on /imagine and /create).

The image request first passes every admission check (nothing held). Then, privately: its
sources are prepared, a promptEnhancement job (priced by the orchestrator, its own small hold)
runs, and the member sees the enhanced prompt with the issues and recommendations found, and
Use enhanced / Keep mine / Cancel (enhance_post.py). The image job goes through admission only
after that choice, with the chosen prompt, as a child of the enhancement (its lineage); the
choice is recorded once, so a second click (or one after a restart) cannot start a second image.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord

from bot.catalog import Model, Operation, RequestOptions
from bot.catalog.tools import ENHANCE_PRICE, Tool, enhancement_step
from bot.discord_adapter.access import requester
from bot.discord_adapter.enhance_post import enhanced_prompt
from bot.discord_adapter.interaction import think, update
from bot.discord_adapter.replies import UserFacingError
from bot.discord_adapter.tool_flow import refused_text, tell
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.engine.requests import JobRequest, Refusal
from bot.engine.tools import ToolQuote, ToolRequest
from bot.media.intake import prepare_attachments
from bot.media.limits import MediaError
from bot.store.choices import Choice, PromptChoices
from bot.store.jobs import JobStatus

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot
    from bot.discord_adapter.flow import Pending

log = logging.getLogger(__name__)

CHOSEN = {
    Choice.ENHANCED: "the enhanced prompt",
    Choice.MINE: "your own prompt",
    Choice.CANCEL: "no image",
}


class EnhanceFlow:
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.choices = PromptChoices(bot.services.db, bot.services.clock)
        # Clicks of this process starting an image from an enhancement, by its job id.
        self._starting: dict[str, int] = {}

    async def begin(self, interaction: discord.Interaction, pending: Pending) -> None:
        """Enhance the prompt of an image request that passed its checks."""
        bot, image = self.bot, pending.request
        if not interaction.response.is_done():
            await think(interaction)
        try:
            sources = pending.sources or ()
            if not sources and pending.attachments:
                async with bot.preparing.one(image.requester, pending.quote.settings):
                    await tell(interaction, "⏳ Checking your images…")
                    sources = tuple(
                        await prepare_attachments(
                            bot.services.downloads,
                            pending.attachments,
                            image.model,
                            bot.media_limits,
                            bot.services.images,
                        )
                    )
            # A source its channel may not show is refused before the enhancement is paid for.
            await bot.engine.check_sources(replace(image, sources=sources))
            prompt = image.options.prompt
            ecosystem = bot.services.settings.civitai.enhance_ecosystem
            request = ToolRequest(
                requester=image.requester,
                tool=Tool.ENHANCE,
                step=enhancement_step(prompt, ecosystem=ecosystem),
                estimate=ENHANCE_PRICE,
                options={
                    "prompt": prompt,
                    "target": {
                        "model": image.model.value,
                        "operation": image.operation.value,
                        "options": image.options.as_dict(),
                    },
                },
                sources=sources,
                parent_job_id=image.parent_job_id,
            )
            quote = await bot.engine.tools.quote(request)
        except (MediaError, Refusal) as exc:
            await tell(interaction, refused_text(exc))
            return
        await bot.tools.confirm_or_start(interaction, request, quote, "enhance")

    async def start(
        self, interaction: discord.Interaction, request: ToolRequest, quote: ToolQuote
    ) -> None:
        """The enhancement's status is the member's private answer (with Cancel)."""
        bot = self.bot
        job = await bot.tools.admit(interaction, request, quote)
        if job is None:
            return
        embed, view = await bot.publisher.first_status(job)
        try:
            message = await interaction.edit_original_response(
                content="✨ Enhancing your prompt first; your image starts once you choose.",
                embed=embed,
                view=view,
            )
            view.stop()
        except (discord.HTTPException, *NETWORK_ERRORS) as exc:  # admitted: it runs regardless
            why = exc if isinstance(exc, discord.HTTPException) else type(exc).__name__
            log.warning("job %s: private status not shown (%s); starting anyway", job.id, why)
            await bot.engine.launch(job)
            return
        await bot.engine.launch(job, message.id)

    async def choose(self, interaction: discord.Interaction, job_id: str, choice: Choice) -> None:
        bot = self.bot
        job = await bot.services.jobs.job(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            raise UserFacingError("I cannot find that prompt enhancement any more.")
        if interaction.user.id != job.member_id:
            raise UserFacingError("Only the member who asked can choose.")
        # Still delivering is fine: the member can see the choice before Discord has told us
        # it was posted (and the job is marked done).
        if job.status not in (JobStatus.DONE, JobStatus.DELIVERING) or job.output is None:
            raise UserFacingError("This prompt enhancement has nothing to choose from.")
        target = job.options["target"]
        prompt = enhanced_prompt(job) if choice is Choice.ENHANCED else job.prompt
        model, operation = Model(target["model"]), Operation(target["operation"])
        options = RequestOptions(**{**target["options"], "prompt": prompt})
        sources = await bot.services.jobs.sources(job.id)
        if choice is not Choice.CANCEL:
            # An enhanced prompt too long for the model is refused before the choice counts.
            who = await requester(interaction, bot.services.guilds)
            bot.engine.validate(JobRequest(who, model, operation, options, tuple(sources)))
        # A choice already made may be made again only if its image never started and no
        # click here is starting it now (the bot stopped in between, or it was refused).
        first_here = not self._starting.get(job.id)
        self._starting[job.id] = self._starting.get(job.id, 0) + 1
        try:
            earlier = await self.choices.choose(
                job.id, choice, interaction.user.id, retake=first_here
            )
            if earlier is not None:
                raise UserFacingError(f"You already chose {CHOSEN[earlier]} for this prompt.")
            if choice is Choice.CANCEL:
                await update(
                    interaction,
                    content="Canceled: no image was started, and nothing is held for it.",
                    view=None,
                )
                return
            # The buttons stay until the image is admitted: after a stop in between, or a
            # refusal, the member can choose again.
            await update(interaction, content=f"Using {CHOSEN[choice]}…")
            await bot.flow.begin(
                interaction,
                model,
                operation,
                options,
                sources=sources or None,
                parent_job_id=job.id,
            )
            if await bot.services.jobs.children(job.id):
                with contextlib.suppress(discord.HTTPException):
                    await interaction.edit_original_response(view=None)
        finally:
            self._starting[job.id] -= 1
            if not self._starting[job.id]:
                del self._starting[job.id]
