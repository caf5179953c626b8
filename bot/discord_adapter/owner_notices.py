"""A server's owner told, by DM, of a problem with the server's setup that only they (or
their admins) can fix: a moderation or log channel the bot cannot post in. Each caller
decides how often (once per problem, not once per job)."""

from __future__ import annotations

import logging
from enum import Enum

import discord

from bot.discord_adapter.uploads import NETWORK_ERRORS

log = logging.getLogger(__name__)


class Told(Enum):
    YES = "yes"
    # The owner takes no DMs: asking again will not help.
    REFUSED = "refused"
    # A passing failure (network, a long 429, the owner not found): worth another try later.
    NOT_NOW = "not now"


async def tell_owner(bot: discord.Client, guild_id: int, text: str) -> Told:
    """DM the owner of the server `text` (with the server's name, in bold, for `{guild}`)."""
    try:
        guild = bot.get_guild(guild_id) or await bot.fetch_guild(guild_id)
        owner = await bot.fetch_user(guild.owner_id) if guild.owner_id else None
        if owner is None:
            raise LookupError("the server has no owner we can reach")
        await owner.send(text.replace("{guild}", f"**{guild.name}**"))
        return Told.YES
    except discord.Forbidden as exc:
        log.warning("guild %s: the owner does not accept DMs (%s)", guild_id, exc.code)
        return Told.REFUSED
    except (discord.HTTPException, discord.RateLimited, LookupError, *NETWORK_ERRORS) as exc:
        why_not = str(exc) or type(exc).__name__
        log.warning("guild %s: could not tell the owner (%s)", guild_id, why_not)
        return Told.NOT_NOW
