"""Who is asking, and may they: members, moderators and admins, checked at runtime."""

from __future__ import annotations

import discord

from bot.engine.requests import Requester
from bot.store.guilds import GuildSettings, GuildStore


class NotPermitted(discord.app_commands.CheckFailure):
    pass


def role_ids(user: discord.abc.User) -> tuple[int, ...]:
    """The member's role ids as Discord sent them, @everyone (the server's id) included.
    Not Member.roles: it drops every role the bot has not cached (a server not described to
    the bot yet, or one it is out of), and the member would get the wrong allowance."""
    if not isinstance(user, discord.Member):
        return ()
    return tuple(sorted({*user._roles, user.guild.id}))


def _roles(user: discord.abc.User) -> set[int]:
    return set(role_ids(user))


def _guild_permissions(interaction: discord.Interaction) -> discord.Permissions:
    """Server-wide permissions from the member's roles. Not interaction.permissions: those are
    one channel's, and Manage Messages granted in a single channel must not make a moderator
    of the whole server."""
    user = interaction.user
    return user.guild_permissions if isinstance(user, discord.Member) else discord.Permissions()


def is_moderator(interaction: discord.Interaction, settings: GuildSettings) -> bool:
    """Manage Messages (or Administrator) server-wide, or the configured moderator role."""
    perms = _guild_permissions(interaction)
    if perms.manage_messages or perms.administrator:
        return True
    role = settings.moderator_role_id
    return role is not None and role in _roles(interaction.user)


def is_admin(interaction: discord.Interaction, settings: GuildSettings) -> bool:
    """Manage Server (or Administrator) server-wide, or the configured admin role."""
    perms = _guild_permissions(interaction)
    if perms.manage_guild or perms.administrator:
        return True
    role = settings.admin_role_id
    return role is not None and role in _roles(interaction.user)


def age_restricted(channel: object) -> bool:
    """Discord's age restriction ("NSFW") on a channel; a thread has its parent's. A channel
    Discord has not described to us counts as not age-restricted."""
    if isinstance(channel, discord.Thread | discord.app_commands.AppCommandThread):
        channel = channel.parent
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def requester(interaction: discord.Interaction, guilds: GuildStore) -> Requester:
    if interaction.guild_id is None or interaction.channel_id is None:
        raise NotPermitted("Image commands work in a server's channels, not in DMs.")
    settings = await guilds.settings(interaction.guild_id)
    roles = role_ids(interaction.user)
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    return Requester(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        member_id=interaction.user.id,
        roles=roles,
        is_moderator=is_moderator(interaction, settings),
        parent_channel_id=parent,
        age_restricted=age_restricted(channel),
    )


async def require_moderator(interaction: discord.Interaction, guilds: GuildStore) -> None:
    if interaction.guild_id is None:
        raise NotPermitted("This only works in a server.")
    if not is_moderator(interaction, await guilds.settings(interaction.guild_id)):
        raise NotPermitted("Only moderators (Manage Messages or the moderator role) can do that.")


async def require_admin(interaction: discord.Interaction, guilds: GuildStore) -> None:
    if interaction.guild_id is None:
        raise NotPermitted("This only works in a server.")
    if not is_admin(interaction, await guilds.settings(interaction.guild_id)):
        raise NotPermitted("Only admins (Manage Server or the admin role) can do that.")
