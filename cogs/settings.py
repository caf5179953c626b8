"""/settings: where moderation goes, which models, result buttons (Upscale, Remove background)
and channels are on, confirmation threshold, concurrency — for admins (Manage Server or the
admin role, checked at runtime). Every change answers with all current values."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.catalog.names import MODEL_NAMES
from bot.catalog.tools import IMAGE_TOOLS, Tool
from bot.discord_adapter.access import require_admin
from bot.discord_adapter.interaction import Interaction
from bot.discord_adapter.replies import reply
from bot.store.guilds import GuildSettings
from bot.store.ledger_records import MAX_AMOUNT

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

MODELS = [Choice(name=m, value=m) for m in MODEL_NAMES]


def summary(s: GuildSettings) -> discord.Embed:
    def channel(cid: int | None) -> str:
        return f"<#{cid}>" if cid else "not set"

    def role(rid: int | None) -> str:
        return f"<@&{rid}>" if rid else "not set"

    enabled = [m for m in MODEL_NAMES if s.model_enabled(m)]
    tools = ", ".join(
        f"{t.label} {'on' if s.model_enabled(t.value) else 'off'}" for t in IMAGE_TOOLS
    )
    retired = sorted(s.retired_models)
    if s.allowed_channels:
        channels = "only " + ", ".join(f"<#{c}>" for c in sorted(s.allowed_channels))
    else:
        channels = "all channels"
    if s.denied_channels:
        channels += "; never " + ", ".join(f"<#{c}>" for c in sorted(s.denied_channels))
    lines = [
        f"Moderation channel: {channel(s.mod_channel_id)}",
        f"Log channel: {channel(s.log_channel_id)}",
        f"Default model (/imagine): {s.default_model}",
        f"Models on: {', '.join(enabled) or 'none'}",
        f"Result buttons: {tools}",
        f"Image commands in: {channels}",
        f"Confirm requests above: {s.confirm_above:,} Buzz",
        f"Jobs at once: {s.per_member_concurrency} per member, {s.per_guild_concurrency} "
        "for the server",
        f"Re-roll by anyone: {'yes' if s.reroll_anyone else 'no, only the requester'}",
        f"Moderator role: {role(s.moderator_role_id)} · admin role: {role(s.admin_role_id)}",
        f"Automatic ban: {s.strikes_to_ban or 'never'}"
        + (f" strikes within {s.strike_window_days} days" if s.strikes_to_ban else ""),
    ]
    if retired:
        lines.append(
            f"Retired by the orchestrator (off everywhere until turned on): {', '.join(retired)}"
        )
    return discord.Embed(
        title="Image bot settings", description="\n".join(lines), colour=discord.Colour.blurple()
    )


class Settings(commands.Cog):
    settings = app_commands.Group(
        name="settings",
        description="Image bot settings for this server",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.services = bot.services

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        await require_admin(interaction, self.services.guilds)
        return True

    async def _update(self, interaction: Interaction, note: str = "", **changes: object) -> None:
        assert interaction.guild_id is not None
        current = await self.services.guilds.update(
            interaction.guild_id, actor_id=interaction.user.id, **changes
        )
        await reply(interaction, note, embed=summary(current))

    @settings.command(name="show", description="All settings of this server")
    async def show(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await reply(
            interaction,
            "",
            embed=summary(await self.services.guilds.settings(interaction.guild_id)),
        )

    @settings.command(name="mod-channel", description="Where review items for moderators go")
    async def mod_channel(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        note = self._posting_note(channel)
        await self._update(interaction, note, mod_channel_id=channel.id, mod_channel_warned=False)
        assert interaction.guild_id is not None
        posted = await self.bot.board.post_pending(interaction.guild_id)
        if posted:
            await reply(interaction, f"Posted {posted} waiting review item(s) there.")

    @settings.command(name="log-channel", description="Where one line per finished job goes")
    async def log_channel(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        await self._update(interaction, self._posting_note(channel), log_channel_id=channel.id)

    @settings.command(name="default-model", description="The model /imagine uses")
    @app_commands.choices(model=MODELS)
    async def default_model(self, interaction: Interaction, model: Choice[str]) -> None:
        await self._update(interaction, default_model=model.value)

    @settings.command(name="model", description="Switch a model on or off for this server")
    @app_commands.choices(model=MODELS)
    async def model(self, interaction: Interaction, model: Choice[str], enabled: bool) -> None:
        assert interaction.guild_id is not None
        updated = await self.services.guilds.set_model(
            interaction.guild_id, model.value, enabled, actor_id=interaction.user.id
        )
        await reply(interaction, "", embed=summary(updated))

    @settings.command(name="upscale", description="Switch the results' Upscale button on or off")
    async def upscale(self, interaction: Interaction, enabled: bool) -> None:
        await self._tool(interaction, Tool.UPSCALE, enabled)

    @settings.command(
        name="remove-background",
        description="Switch the results' Remove background button on or off",
    )
    async def remove_background(self, interaction: Interaction, enabled: bool) -> None:
        await self._tool(interaction, Tool.REMOVE_BACKGROUND, enabled)

    async def _tool(self, interaction: Interaction, tool: Tool, enabled: bool) -> None:
        assert interaction.guild_id is not None
        updated = await self.services.guilds.set_model(
            interaction.guild_id, tool.value, enabled, actor_id=interaction.user.id
        )
        await reply(interaction, "", embed=summary(updated))

    @settings.command(name="channel", description="Allow or refuse image commands in a channel")
    @app_commands.describe(
        channel="A text, voice, forum or stage channel (its threads follow it)",
        allowed="True: allow it (when some channels are allowed, only those work); "
        "False: refuse it",
    )
    async def channel(
        self,
        interaction: Interaction,
        channel: discord.abc.GuildChannel,
        allowed: bool,
    ) -> None:
        assert interaction.guild_id is not None
        updated = await self.services.guilds.set_channel(
            interaction.guild_id, channel.id, allowed, actor_id=interaction.user.id
        )
        await reply(interaction, "", embed=summary(updated))

    @settings.command(
        name="confirm-above", description="Ask members to confirm requests costing more than this"
    )
    async def confirm_above(
        self, interaction: Interaction, buzz: Range[int, 0, MAX_AMOUNT]
    ) -> None:
        await self._update(interaction, confirm_above=buzz)

    @settings.command(name="concurrency", description="How many jobs may run at once")
    @app_commands.rename(per_member="per-member", per_guild="per-guild")
    async def concurrency(
        self,
        interaction: Interaction,
        per_member: Range[int, 1, 50],
        per_guild: Range[int, 1, 10_000],
    ) -> None:
        await self._update(
            interaction, per_member_concurrency=per_member, per_guild_concurrency=per_guild
        )

    @settings.command(
        name="mod-role", description="A role that may moderate (besides Manage Messages)"
    )
    async def mod_role(self, interaction: Interaction, role: discord.Role) -> None:
        await self._update(interaction, moderator_role_id=role.id)

    @settings.command(
        name="admin-role",
        description="A role that may change quotas and settings (besides Manage Server)",
    )
    async def admin_role(self, interaction: Interaction, role: discord.Role) -> None:
        await self._update(interaction, admin_role_id=role.id)

    @settings.command(
        name="reroll-anyone",
        description="May anyone re-roll a result (charged to them), or only the requester?",
    )
    async def reroll_anyone(self, interaction: Interaction, allowed: bool) -> None:
        await self._update(interaction, reroll_anyone=allowed)

    @settings.command(
        name="strikes",
        description="Automatic ban after this many strikes within some days (0 = never)",
    )
    async def strikes(
        self, interaction: Interaction, count: Range[int, 0, 100], days: Range[int, 1, 3650]
    ) -> None:
        await self._update(interaction, strikes_to_ban=count, strike_window_days=days)

    def _posting_note(self, channel: discord.TextChannel) -> str:
        me = channel.guild.me
        if me is None:
            return ""
        perms = channel.permissions_for(me)
        if perms.send_messages and perms.attach_files and perms.embed_links:
            return ""
        return (
            f"Note: I cannot post there yet; give me Send Messages, Attach Files and Embed "
            f"Links in {channel.mention}."
        )


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Settings(bot))
