"""The interactions this bot receives, typed with the bot itself: `interaction.client` is an
ImageBot to the type checker (at run time discord.py needs the plain class)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import discord

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

    Interaction: TypeAlias = discord.Interaction[ImageBot]
else:
    Interaction = discord.Interaction
