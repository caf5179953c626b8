"""Endings shown nowhere: the job's status message was out of the bot's reach (403) and the
member could not be told privately either. They are kept here and shown again when the bot's
access may have come back: it is back in the server, a channel changed (the job's own, or the
parent of the thread it ran in: a thread has its parent's permissions), or a role changed that
the bot has (its permissions, or the bot's roles themselves)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import discord

from bot.engine.publisher import StatusUpdate


def bot_role_changed(guild: discord.Guild, role: discord.Role) -> bool:
    """Whether a role update may change what the bot may do (@everyone is everyone's)."""
    me = guild.me
    return role.is_default() or (me is not None and me.get_role(role.id) is not None)


def bot_roles_changed(bot: discord.Client, before: discord.Member, after: discord.Member) -> bool:
    """Whether a member update is the bot's own roles changing."""
    user = bot.user
    return user is not None and after.id == user.id and before.roles != after.roles


class UnshownEndings:
    def __init__(
        self, bot: discord.Client, show: Callable[[StatusUpdate], Awaitable[None]]
    ) -> None:
        self.bot = bot
        self._show = show  # the publisher's status edit (kept again if still out of reach)
        self._kept: dict[str, StatusUpdate] = {}

    def keep(self, update: StatusUpdate) -> None:
        self._kept[update.job.id] = update

    def _reached(self, update: StatusUpdate, guild_id: int, channel_id: int | None) -> bool:
        job = update.job
        if job.guild_id != guild_id:
            return False
        if channel_id is None or channel_id == job.channel_id:
            return True
        where = self.bot.get_channel(job.channel_id)
        if where is None:
            # Not cached (an archived thread, perhaps of this channel): tried on server-wide
            # changes only, as one channel update each (a reorder) would each be a refused edit.
            return False
        return isinstance(where, discord.Thread) and where.parent_id == channel_id

    async def show(self, guild_id: int, channel_id: int | None = None) -> None:
        """`channel_id`: the channel that changed (its threads' endings are tried too);
        None for the whole server (the bot back in it, a role changed)."""
        for job_id, update in list(self._kept.items()):
            if self.bot.is_closed():  # stopping: kept as they are (the session is gone)
                return
            if not self._reached(update, guild_id, channel_id):
                continue
            if self._kept.pop(job_id, None) is not None:
                await self._show(update)
