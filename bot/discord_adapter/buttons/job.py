"""Buttons on a job's status message: Cancel while it can stop, Appeal when it was held or
blocked."""

from __future__ import annotations

from typing import Any

import discord

from bot.discord_adapter.access import NotPermitted, requester
from bot.discord_adapter.buttons.base import KeyedButton, bot_of, view_of
from bot.discord_adapter.canceling import cancel_job
from bot.discord_adapter.interaction import think
from bot.discord_adapter.modals import AppealModal
from bot.discord_adapter.replies import UserFacingError, reply


class CancelButton(KeyedButton, prefix="job:cancel"):
    LABEL = "Cancel"

    async def act(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        if await bot.services.jobs.job(self.key) is None:
            raise UserFacingError("That job is still being prepared; try again in a moment.")
        await think(interaction)
        who = await requester(interaction, bot.services.guilds)
        await reply(interaction, await cancel_job(bot, self.key, who))


class AppealButton(KeyedButton, prefix="appeal"):
    LABEL = "Appeal"
    STYLE = discord.ButtonStyle.primary

    async def act(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        if interaction.guild_id is None:  # a crafted press in a DM: jobs belong to a server
            raise NotPermitted("This only works in a server.")
        item = await bot.review.appealable(interaction.guild_id, self.key, interaction.user.id)
        await interaction.response.send_modal(AppealModal(self.key, item.id))


def status_view(job_id: str, *, active: bool, appealable: bool) -> discord.ui.View | None:
    """Cancel while the job can still stop; Appeal when it was held or blocked."""
    buttons: list[discord.ui.Item[Any]] = []
    if active:
        buttons.append(CancelButton(job_id))
    if appealable:
        buttons.append(AppealButton(job_id))
    return view_of(*buttons)
