"""Buttons on status and result messages. Each is a DynamicItem: its custom_id carries the job
id and its state is read from the database, so a click works after a restart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.app import UserFacingError, reply, report_error
from bot.catalog import Model, Operation, RequestOptions
from bot.delivery import CANCEL_ID, CANCEL_TEMPLATE, RESULT_ID, RESULT_TEMPLATE, details_embed
from bot.store.jobs import JobRecord
from cogs.checks import is_moderator, requester
from cogs.edit import EditPrompt, editing_model, image_attachments
from cogs.flow import CONFIRM_ID, CONFIRM_TEMPLATE

if TYPE_CHECKING:
    from bot.app import ImageBot


def bot_of(interaction: discord.Interaction) -> ImageBot:
    return interaction.client  # type: ignore[return-value]


async def job_here(interaction: discord.Interaction, job_id: str) -> JobRecord:
    job = await bot_of(interaction).services.jobs.get(job_id)
    if job is None or job.guild_id != interaction.guild_id:
        raise UserFacingError("I cannot find that job here any more.")
    return job


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=CANCEL_TEMPLATE):
    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Cancel", custom_id=CANCEL_ID.format(job=job_id)))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> CancelButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            bot = bot_of(interaction)
            if await bot.services.jobs.get(self.job_id) is None:
                raise UserFacingError("That job is still being prepared; try again in a moment.")
            await interaction.response.defer(ephemeral=True, thinking=True)
            who = await requester(interaction, bot.services.guilds)
            job = await bot.engine.cancel(self.job_id, who)
            await reply(
                interaction,
                f"Canceling job `{job.id}`; the status message will say what was charged.",
            )
        except Exception as error:
            await report_error(interaction, error)


class ResultButton(discord.ui.DynamicItem[discord.ui.Button], template=RESULT_TEMPLATE):
    def __init__(self, action: str, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=action.title(), custom_id=RESULT_ID.format(action=action, job=job_id)
            )
        )
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> ResultButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            job = await job_here(interaction, self.job_id)
            await getattr(self, f"_{self.action}")(interaction, job)
        except Exception as error:
            await report_error(interaction, error)

    async def _reroll(self, interaction: discord.Interaction, job: JobRecord) -> None:
        """The same request again, charged to whoever clicks."""
        bot = bot_of(interaction)
        settings = await bot.services.guilds.get(job.guild_id)
        if interaction.user.id != job.member_id and not settings.reroll_anyone:
            raise UserFacingError("Only the member who asked can re-roll this here.")
        sources = await bot.services.jobs.sources(job.id)
        await bot.flow.begin(
            interaction,
            Model(job.model),
            Operation(job.operation),
            RequestOptions(**job.options),
            sources=sources or None,
            parent_job_id=job.id,
        )

    async def _edit(self, interaction: discord.Interaction, job: JobRecord) -> None:
        """Edit one of these images: it becomes the source of a new edit (multi-turn)."""
        bot = bot_of(interaction)
        message = interaction.message
        images = image_attachments(message) if message is not None else []
        if not images:
            raise UserFacingError("This message has no image left to edit.")
        model = await editing_model(bot, job.guild_id, job.model)
        await interaction.response.send_modal(EditPrompt(bot, images, model, job.id))

    async def _details(self, interaction: discord.Interaction, job: JobRecord) -> None:
        bot = bot_of(interaction)
        events = await bot.services.jobs.events(job.id)
        hold = await bot.services.ledger.hold_of(job.id)
        embed = details_embed(job, events, hold["amount"] if hold else None)
        await reply(interaction, "", embed=embed)

    async def _delete(self, interaction: discord.Interaction, job: JobRecord) -> None:
        bot = bot_of(interaction)
        settings = await bot.services.guilds.get(job.guild_id)
        if interaction.user.id != job.member_id and not is_moderator(interaction, settings):
            raise UserFacingError("Only the member who asked, or a moderator, can delete this.")
        if interaction.message is None:
            raise UserFacingError("That message is already gone.")
        await interaction.message.delete()
        await reply(interaction, "Deleted.")


class ConfirmButton(discord.ui.DynamicItem[discord.ui.Button], template=CONFIRM_TEMPLATE):
    def __init__(self, answer: str, token: str) -> None:
        super().__init__(
            discord.ui.Button(label=answer, custom_id=CONFIRM_ID.format(answer=answer, token=token))
        )
        self.answer, self.token = answer, token

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> ConfirmButton:
        return cls(match["answer"], match["token"])

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            await bot_of(interaction).flow.answer(interaction, self.token, self.answer == "yes")
        except Exception as error:
            await report_error(interaction, error)


async def setup(bot: ImageBot) -> None:
    bot.add_dynamic_items(CancelButton, ResultButton, ConfirmButton)
