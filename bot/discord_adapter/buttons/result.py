"""Buttons on a posted result: Re-roll (the same request again, charged to whoever clicks),
Edit (one of these images becomes the source of a new edit), Upscale and Remove background
(buttons/tools.py), Details (with the job it came from) and Delete."""

from __future__ import annotations

import contextlib
from collections.abc import Collection

import discord

from bot.catalog import Model, Operation, RequestOptions
from bot.catalog.tools import IMAGE_TOOLS, Tool, tool_of
from bot.discord_adapter.access import requester
from bot.discord_adapter.attachments import image_attachments
from bot.discord_adapter.buttons.base import KeyedButton, bot_of, view_of
from bot.discord_adapter.buttons.tools import IMAGE_TOOL_BUTTONS
from bot.discord_adapter.embeds import details_embed
from bot.discord_adapter.modals import EditPrompt
from bot.discord_adapter.replies import UserFacingError, reply
from bot.engine.decisions import check_delete, check_reroll
from bot.store.jobs import JobRecord


async def job_here(interaction: discord.Interaction, job_id: str) -> JobRecord:
    job = await bot_of(interaction).services.jobs.job(job_id)
    if job is None or job.guild_id != interaction.guild_id:
        raise UserFacingError("I cannot find that job here any more.")
    return job


class RerollButton(KeyedButton, prefix="res:reroll"):
    LABEL = "Re-roll"
    STYLE = discord.ButtonStyle.primary

    async def act(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        with bot.flow.once(f"reroll:{self.key}", interaction.user.id):
            await self._reroll(interaction)

    async def _reroll(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        job = await job_here(interaction, self.key)
        if tool_of(job.model) is not None:
            raise UserFacingError("Only an image request can be re-rolled.")
        settings = await bot.services.guilds.settings(job.guild_id)
        check_reroll(job, await requester(interaction, bot.services.guilds), settings.reroll_anyone)
        sources = await bot.services.jobs.sources(job.id)
        if not sources and await bot.services.retention.sources_pruned(job.id):
            raise UserFacingError(
                f"The image this edit started from was deleted after "
                f"{bot.services.retention.days} days, so it cannot be re-rolled; use /edit with "
                "the image again. Nothing was charged."
            )
        await bot.flow.begin(
            interaction,
            Model(job.model),
            Operation(job.operation),
            RequestOptions(**job.options),
            sources=sources or None,
            parent_job_id=job.id,
        )


class EditButton(KeyedButton, prefix="res:edit"):
    LABEL = "Edit"

    async def act(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        job = await job_here(interaction, self.key)
        message = interaction.message
        images = image_attachments(message) if message is not None else []
        if not images:
            raise UserFacingError("This message has no image left to edit.")
        settings = await bot.services.guilds.settings(job.guild_id)
        model = settings.editing_model(job.model)
        await interaction.response.send_modal(EditPrompt(images, model, job.id, own=True))


class DetailsButton(KeyedButton, prefix="res:details"):
    LABEL = "Details"

    async def act(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        job = await job_here(interaction, self.key)
        events = await bot.services.jobs.events(job.id)
        hold = await bot.services.ledger.hold(job.id)
        parent = await bot.services.jobs.job(job.parent_job_id) if job.parent_job_id else None
        embed = details_embed(job, events, hold.amount if hold else None, parent=parent)
        await reply(interaction, "", embed=embed)


class DeleteButton(KeyedButton, prefix="res:delete"):
    LABEL = "Delete"
    STYLE = discord.ButtonStyle.danger

    async def act(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        job = await job_here(interaction, self.key)
        check_delete(job, await requester(interaction, bot.services.guilds))
        if interaction.message is None:
            raise UserFacingError("That message is already gone.")
        # A second click (theirs or a moderator's) may find it deleted already.
        with contextlib.suppress(discord.NotFound):
            await interaction.message.delete()
        await reply(interaction, "Deleted.")


RESULT_BUTTONS = (RerollButton, EditButton, DetailsButton, DeleteButton)


def result_view(job: JobRecord, tools: Collection[Tool] = ()) -> discord.ui.View:
    """Re-roll and Edit, then Upscale and Remove background where the lane runs them, then
    Details and Delete. An upscale's or a cut-out's result has no Re-roll."""
    first: list[type[KeyedButton]] = [EditButton]
    if tool_of(job.model) is None:
        first.insert(0, RerollButton)
    taken = [IMAGE_TOOL_BUTTONS[t] for t in IMAGE_TOOLS if t in tools]
    view = view_of(*(b(job.id) for b in (*first, *taken, DetailsButton, DeleteButton)))
    assert view is not None
    return view
