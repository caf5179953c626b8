"""The interactions this bot receives, typed with the bot itself: `interaction.client` is an
ImageBot to the type checker (at run time discord.py needs the plain class), and their first
answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import discord

from bot.discord_adapter.replies import first_answer

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

    Interaction: TypeAlias = discord.Interaction[ImageBot]
else:
    Interaction = discord.Interaction


async def think(interaction: discord.Interaction) -> None:
    """The private "thinking…" first answer, sent again if its answer was lost."""
    await first_answer(
        interaction,
        lambda: interaction.response.defer(ephemeral=True, thinking=True),
        discord.InteractionResponseType.deferred_channel_message,
    )


async def update(interaction: discord.Interaction, **changes: Any) -> None:
    """The first answer to a click that edits the clicked message, sent again if its answer
    was lost (what follows it, a job's start, must not hang on a lost answer)."""
    await first_answer(
        interaction,
        lambda: interaction.response.edit_message(**changes),
        discord.InteractionResponseType.message_update,
    )
