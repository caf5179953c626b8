"""/settings: where moderation goes, which models, result buttons (Upscale, Remove background)
and channels are on, confirmation threshold, concurrency, content levels and AI
pre-moderation — for admins (Manage Server or the admin role, checked at runtime). Every
change answers with all current values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.catalog.names import MODEL_NAMES
from bot.catalog.tools import IMAGE_TOOLS, Tool
from bot.discord_adapter.access import age_restricted, require_admin
from bot.discord_adapter.interaction import Interaction, think
from bot.discord_adapter.replies import reply
from bot.discord_adapter.review_text import channel_problem
from bot.safety import levels
from bot.safety.labels import parse_labels
from bot.store.guilds import GuildSettings, SettingsRefused
from bot.store.ledger_records import MAX_AMOUNT
from bot.store.safety import LevelChange, ReleaseChange, SafetySettings

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

MODELS = [Choice(name=m, value=m) for m in MODEL_NAMES]
DEFAULT = "default"
SHOWN_CHANNELS = 25  # an embed's description holds 4,096 characters
# Where a request can be made (a thread follows its channel). Not a category: its channels
# would not follow a rule set on it, and an allow-list of a category alone refuses everywhere.
PostingChannel = (
    discord.TextChannel | discord.VoiceChannel | discord.ForumChannel | (discord.StageChannel)
)
LEVELS = [
    *(Choice(name=levels.name(v), value=v) for v in levels.LEVELS),
    Choice(name="Default (the server's level / what Discord allows)", value=DEFAULT),
]
FALLBACKS = [
    Choice(name="Hold the request for review", value="hold"),
    Choice(name="Let the request through", value="allow"),
]


def grantable(role: discord.Role | None, what: str) -> int | None:
    """The role's id to grant `what` to (None: unset), refusing roles every member has or that
    belong to an integration."""
    if role is None:
        return None
    if role.is_default():
        raise SettingsRefused("role", f"@everyone would make every member {what}; choose a role")
    if role.managed:
        raise SettingsRefused("role", f"{role.name} belongs to an integration; choose a role")
    return role.id


def listed(channel_ids: Iterable[int]) -> str:
    """Channel mentions, the first SHOWN_CHANNELS of them: an embed holds 4,096 characters."""
    ids = sorted(channel_ids)
    shown = ", ".join(f"<#{c}>" for c in ids[:SHOWN_CHANNELS])
    more = len(ids) - SHOWN_CHANNELS
    return shown + (f" and {more} more" if more > 0 else "")


def summary(
    s: GuildSettings,
    *,
    served: Iterable[str] | None = None,
    tools_offered: Iterable[Tool] = IMAGE_TOOLS,
    log_problem: str | None = None,
) -> discord.Embed:
    """`served`: the models the image service serves now (None: all); `tools_offered`: the
    result buttons it runs. What it does not offer is not shown as on. `log_problem`: why
    log lines are not posted in the log channel, when they are not."""

    def channel(cid: int | None) -> str:
        return f"<#{cid}>" if cid else "not set"

    def role(rid: int | None) -> str:
        return f"<@&{rid}>" if rid else "not set"

    available = set(MODEL_NAMES if served is None else served)
    enabled = [m for m in MODEL_NAMES if s.model_enabled(m) and m in available]
    offered = set(tools_offered)

    def tool_state(t: Tool) -> str:
        if t not in offered:
            return "not offered by this service"
        return "on" if s.model_enabled(t.value) else "off"

    tools = ", ".join(f"{t.label} {tool_state(t)}" for t in IMAGE_TOOLS)
    retired = sorted(s.retired_models)
    channels = "only " + listed(s.allowed_channels) if s.allowed_channels else "all channels"
    if s.denied_channels:
        channels += "; never " + listed(s.denied_channels)
    lines = [
        f"Moderation channel: {channel(s.mod_channel_id)}"
        + (f" ⚠️ {problem}" if (problem := channel_problem(s.mod_channel_warning)) else ""),
        f"Log channel: {channel(s.log_channel_id)}"
        + (f" ⚠️ I cannot post there: {log_problem}" if log_problem else ""),
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


def safety_lines(s: SafetySettings) -> list[str]:
    """Content levels, the release channel and AI pre-moderation, in plain words."""
    top = s.max_rating or levels.TOP
    safe = levels.lower(top, levels.SAFE_CAP)
    if safe == top:
        content = f"up to {levels.name(top)} in every channel"
    else:
        content = (
            f"up to {levels.name(safe)} where Discord's age restriction is off, up to "
            f"{levels.name(top)} where it is on"
        )
    lines = [f"Results shown: {content}"]
    if s.channel_ratings:
        shown = sorted(s.channel_ratings.items())[:SHOWN_CHANNELS]
        own = ", ".join(f"<#{c}> {levels.name(v)}" for c, v in shown)
        if len(s.channel_ratings) > SHOWN_CHANNELS:
            own += f" and {len(s.channel_ratings) - SHOWN_CHANNELS} more"
        lines.append(f"Channels with their own level (never above what Discord allows): {own}")
    release = f"<#{s.release_channel_id}>" if s.release_channel_id else "not set (DM only)"
    lines.append(f"Results rated above a channel's level can be released to: {release}")
    if s.premoderation:
        labels = ", ".join(s.premoderation_labels) or "all labels"
        fallback = "hold it for review" if s.premoderation_fallback == "hold" else "let it through"
        lines.append(f"AI pre-moderation: on ({labels}; if the check fails: {fallback})")
    else:
        lines.append("AI pre-moderation: off")
    return lines


def with_safety(embed: discord.Embed, safety: SafetySettings) -> discord.Embed:
    embed.description = "\n".join([embed.description or "", *safety_lines(safety)])
    return embed


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

    # Every change is acknowledged first ("thinking…"): its write may wait past Discord's 3
    # seconds for another process's lock, and is made then; unanswered, the admin is told
    # "the application did not respond" for a change that was made.
    async def _update(self, interaction: Interaction, note: str = "", **changes: object) -> None:
        assert interaction.guild_id is not None
        await think(interaction)
        current = await self.services.guilds.update(
            interaction.guild_id, actor_id=interaction.user.id, **changes
        )
        await self._answer(interaction, current, note)

    async def _answer(
        self, interaction: Interaction, current: GuildSettings, note: str = ""
    ) -> None:
        """All current values: the guild's settings and its safety settings."""
        assert interaction.guild_id is not None
        safety = await self.services.safety.settings(interaction.guild_id)
        openai = self.services.openai
        shown = summary(
            current,
            served=openai.offered() if openai is not None else None,
            tools_offered=[t for t in IMAGE_TOOLS if self.bot.engine.tools.supports(t)],
            log_problem=self.bot.publisher.log_lines.problem(
                interaction.guild_id, current.log_channel_id
            ),
        )
        await reply(interaction, note, embed=with_safety(shown, safety))

    @settings.command(name="show", description="All settings of this server")
    async def show(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await self._answer(interaction, await self.services.guilds.settings(interaction.guild_id))

    @settings.command(
        name="mature", description="Which content levels results may have, here and per channel"
    )
    @app_commands.rename(release_channel="release-channel", release_dm_only="release-dm-only")
    @app_commands.describe(
        level="The highest rating shown (never above what Discord's age restriction allows)",
        channel="Set the level of this channel only (its threads follow it)",
        release_channel="An age-restricted channel where moderators may release results "
        "rated above their channel's level",
        release_dm_only="True: no release channel; released results go to the member by DM",
    )
    @app_commands.choices(level=LEVELS)
    async def mature(
        self,
        interaction: Interaction,
        level: Choice[str] | None = None,
        channel: PostingChannel | None = None,
        release_channel: discord.TextChannel | None = None,
        release_dm_only: bool | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        store, guild, actor = self.services.safety, interaction.guild_id, interaction.user.id
        if channel is not None and level is None:
            raise SettingsRefused("level", f"choose the level {channel.mention} may show")
        if release_dm_only and release_channel is not None:
            raise SettingsRefused(
                "release-dm-only", "choose a release-channel or DM only, not both"
            )
        await think(interaction)
        change = None
        if level is not None:
            change = LevelChange(
                None if level.value == DEFAULT else level.value,
                channel.id if channel is not None else None,
                age_restricted(channel),
            )
        release = None
        if release_channel is not None:
            release = ReleaseChange(release_channel.id, age_restricted(release_channel))
        elif release_dm_only:
            release = ReleaseChange(None)
        if change is not None or release is not None:
            await store.set_mature(guild, level=change, release=release, actor_id=actor)
        await self._answer(interaction, await self.services.guilds.settings(guild))

    @settings.command(
        name="premoderation",
        description="Check every prompt with AI moderation before anything runs (costs the "
        "server a little Buzz)",
    )
    @app_commands.rename(on_failure="on-failure")
    @app_commands.describe(
        enabled="True: prompts are checked first; flagged ones wait for a moderator",
        labels="Which labels to check, e.g. 'sexual/minors, hate' (default: all)",
        on_failure="What happens when the check itself fails (default: hold for review)",
    )
    @app_commands.choices(on_failure=FALLBACKS)
    async def premoderation(
        self,
        interaction: Interaction,
        enabled: bool,
        labels: Range[str, 1, 300] | None = None,
        on_failure: Choice[str] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        if enabled and self.services.safety_upstream() is None:
            raise SettingsRefused(
                "enabled",
                "AI pre-moderation runs on the Civitai orchestrator, and this bot has no "
                "CIVITAI_TOKEN; the operator can set one",
            )
        try:
            chosen = parse_labels(labels) if labels is not None else None
        except ValueError as exc:
            raise SettingsRefused("labels", str(exc)) from None
        await think(interaction)
        await self.services.safety.set_premoderation(
            interaction.guild_id,
            enabled,
            labels=chosen,
            fallback=on_failure.value if on_failure is not None else None,
            actor_id=interaction.user.id,
        )
        await self._answer(interaction, await self.services.guilds.settings(interaction.guild_id))

    @settings.command(name="mod-channel", description="Where review items for moderators go")
    async def mod_channel(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        note = self._posting_note(channel)
        await self._update(interaction, note, mod_channel_id=channel.id, mod_channel_warning=None)
        assert interaction.guild_id is not None
        posted = await self.bot.board.post_pending(interaction.guild_id, moved_to=channel.id)
        if posted:
            await reply(interaction, f"Posted {posted} waiting review item(s) there.")

    @settings.command(name="log-channel", description="Where one line per finished job goes")
    @app_commands.describe(channel="Leave it out to stop the log lines")
    async def log_channel(
        self, interaction: Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        if channel is None:
            await self._update(interaction, log_channel_id=None)
            return
        await self._update(interaction, self._posting_note(channel), log_channel_id=channel.id)

    @settings.command(name="default-model", description="The model /imagine uses")
    @app_commands.choices(model=MODELS)
    async def default_model(self, interaction: Interaction, model: Choice[str]) -> None:
        await self._update(interaction, default_model=model.value)

    @settings.command(name="model", description="Switch a model on or off for this server")
    @app_commands.choices(model=MODELS)
    async def model(self, interaction: Interaction, model: Choice[str], enabled: bool) -> None:
        assert interaction.guild_id is not None
        await think(interaction)
        updated = await self.services.guilds.set_model(
            interaction.guild_id, model.value, enabled, actor_id=interaction.user.id
        )
        note = ""
        openai = self.services.openai
        if enabled and openai is not None and model.value not in openai.offered():
            why = openai.switch.why_off(model.value)
            note = (
                f"{model.value} stays off: the image service switched it off ({why}); "
                f"`python -m bot openai-models --enable {model.value}` turns it back on."
                if why
                else f"{model.value} stays off: the image service does not offer it."
            )
        await self._answer(interaction, updated, note)

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
        await think(interaction)
        updated = await self.services.guilds.set_model(
            interaction.guild_id, tool.value, enabled, actor_id=interaction.user.id
        )
        await self._answer(interaction, updated)  # everything, as every /settings answer

    @settings.command(name="channel", description="Allow or refuse image commands in a channel")
    @app_commands.describe(
        channel="A text, voice, forum or stage channel (its threads follow it)",
        allowed="True: allow it (when some channels are allowed, only those work); "
        "False: refuse it",
    )
    async def channel(
        self,
        interaction: Interaction,
        channel: PostingChannel,
        allowed: bool,
    ) -> None:
        assert interaction.guild_id is not None
        await think(interaction)
        updated = await self.services.guilds.set_channel(
            interaction.guild_id, channel.id, allowed, actor_id=interaction.user.id
        )
        await self._answer(interaction, updated)

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
    @app_commands.describe(role="Leave it out to unset it (Manage Messages still moderates)")
    async def mod_role(self, interaction: Interaction, role: discord.Role | None = None) -> None:
        await self._update(interaction, moderator_role_id=grantable(role, "moderator"))

    @settings.command(
        name="admin-role",
        description="A role that may change quotas and settings (besides Manage Server)",
    )
    @app_commands.describe(role="Leave it out to unset it (Manage Server still administers)")
    async def admin_role(self, interaction: Interaction, role: discord.Role | None = None) -> None:
        await self._update(interaction, admin_role_id=grantable(role, "admin"))

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
