"""The interactions this bot receives, typed with the bot itself: `interaction.client` is an
ImageBot to the type checker (at run time discord.py needs the plain class), and their first
answer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeAlias

import discord

from bot.discord_adapter.replies import ALREADY_ACKNOWLEDGED
from bot.discord_adapter.uploads import NETWORK_ERRORS

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

    Interaction: TypeAlias = discord.Interaction[ImageBot]
else:
    Interaction = discord.Interaction

log = logging.getLogger(__name__)


async def think(interaction: discord.Interaction) -> None:
    """The private "thinking…" first answer. A connection lost on the way (or an answer that
    cannot be read) leaves it unknown whether Discord took it, and the 3 seconds run: it is
    sent again at once, and "already acknowledged" then says the first one landed."""
    try:
        await interaction.response.defer(ephemeral=True, thinking=True)
        return
    except NETWORK_ERRORS as exc:
        log.warning(
            "interaction %s: its first answer met %s; sending it again",
            interaction.id,
            type(exc).__name__,
        )
    try:
        await interaction.response.defer(ephemeral=True, thinking=True)
    except discord.HTTPException as exc:
        if exc.code != ALREADY_ACKNOWLEDGED:
            raise
        # discord.py never saw the first one succeed: without this it would answer again
        # (refused) instead of editing the "thinking…" and sending follow-ups.
        interaction.response._response_type = (
            discord.InteractionResponseType.deferred_channel_message
        )
