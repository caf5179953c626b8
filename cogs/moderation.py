"""/mod commands. Every command checks at runtime that the user is a moderator (Manage Messages
or the configured moderator role); Discord's default permissions only hide the commands. The
review items' buttons and the members' appeals live with the review board
(bot/discord_adapter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Range
from discord.ext import commands

from bot.discord_adapter.access import require_moderator
from bot.discord_adapter.embeds import as_written, link, truncate
from bot.discord_adapter.files import MemoryFile
from bot.discord_adapter.interaction import Interaction
from bot.discord_adapter.replies import reply
from bot.discord_adapter.review_text import SOURCE_NAMES, channel_problem, queue_label
from bot.store.sanctions import MAX_BAN_DAYS

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot


class Moderation(commands.Cog):
    mod = app_commands.Group(
        name="mod",
        description="Moderation of image requests",
        guild_only=True,
        default_permissions=discord.Permissions(manage_messages=True),
    )

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.services = bot.services

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        await require_moderator(interaction, self.services.guilds)
        return True

    @mod.command(name="queue", description="Open review items, oldest first")
    @app_commands.describe(source="Only the items from this source")
    @app_commands.choices(
        source=[app_commands.Choice(name=n, value=v) for v, n in SOURCE_NAMES.items()]
    )
    async def queue(
        self, interaction: Interaction, source: app_commands.Choice[str] | None = None
    ) -> None:
        assert interaction.guild_id is not None
        wanted = source.value if source is not None else None
        items = await self.services.moderation.open_items(
            interaction.guild_id, limit=200, source=wanted
        )
        total = await self.services.moderation.count_open(interaction.guild_id, source=wanted)
        # The owner may take no DMs: moderators read why items are not posted here too.
        settings = await self.services.guilds.settings(interaction.guild_id)
        problem = channel_problem(settings.mod_channel_warning)
        note = ""
        if problem:
            note = (
                f"⚠️ Review items cannot be posted: {problem}. An admin fixes it with "
                "/settings mod-channel.\n"
            )
        if not items:
            extra = f" ({SOURCE_NAMES[wanted]})" if wanted else ""
            await reply(interaction, f"{note}Nothing waits for review{extra}.")
            return
        lines = []
        for item in items:
            job = await self.services.jobs.job(item.job_id)
            kind = queue_label(item)
            where = (
                f"[open]({link(item.guild_id, item.message_channel_id, item.message_id)})"
                if item.message_id and item.message_channel_id
                else "not posted"
            )
            who = f"<@{job.member_id}>" if job else "?"
            prompt = as_written(job.prompt, 50) if job else ""
            appeal = " · appealed" if item.appeal_note else ""
            lines.append(f"#{item.id} {kind} · {who} · {prompt} · {where}{appeal}")
        shown, size = [], 0
        for line in lines:  # an embed's description holds 4,096 characters
            if size + len(line) + 1 > 3900:
                break
            shown.append(line)
            size += len(line) + 1
        more = total - len(shown)
        if more:
            shown.append(f"… and {more} more; decide these first")
        embed = discord.Embed(
            title=f"Review queue ({total} open)",
            description="\n".join(shown),
            colour=discord.Colour.orange(),
        )
        await reply(interaction, note.strip(), embed=embed)

    @mod.command(name="ban", description="Ban a member from using the bot here")
    @app_commands.describe(
        days=f"How long (1-{MAX_BAN_DAYS} days); empty = until unbanned",
        reason="Kept in the audit log",
    )
    async def ban(
        self,
        interaction: Interaction,
        # A user, not a member: one who left the server can be banned (and stays banned if
        # they come back); discord.py still gives a Member for one who is in it.
        member: discord.User,
        days: Range[int, 1, MAX_BAN_DAYS] | None = None,
        reason: Range[str, 1, 300] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        ban = await self.services.moderation.ban(
            interaction.guild_id,
            member.id,
            actor_id=interaction.user.id,
            reason=reason,
            days=days,
        )
        until = f" until {ban.expires_at:%Y-%m-%d %H:%M} UTC" if ban.expires_at else ""
        await reply(interaction, f"{member.mention} can no longer use the bot here{until}.")

    @mod.command(name="unban", description="Let a member use the bot here again")
    async def unban(self, interaction: Interaction, member: discord.User) -> None:
        assert interaction.guild_id is not None
        lifted = await self.services.moderation.unban(
            interaction.guild_id,
            member.id,
            actor_id=interaction.user.id,
        )
        text = "can use the bot again" if lifted else "was not banned here"
        await reply(interaction, f"{member.mention} {text}.")

    @mod.command(name="strikes", description="A member's strikes and ban")
    async def strikes(self, interaction: Interaction, member: discord.User) -> None:
        assert interaction.guild_id is not None
        settings = await self.services.guilds.settings(interaction.guild_id)
        window = settings.strike_window_days
        count = await self.services.moderation.strike_count(interaction.guild_id, member.id, window)
        rows = await self.services.moderation.strikes(interaction.guild_id, member.id)
        ban = await self.services.moderation.active_ban(interaction.guild_id, member.id)
        lines = [f"{count} strike(s) in the last {window} days; {len(rows)} in all."]
        if settings.strikes_to_ban:
            lines.append(f"Automatic ban at {settings.strikes_to_ban} within {window} days.")
        for row in rows[:10]:
            lines.append(
                f"· {row['created_at'][:10]} by <@{row['actor_id']}>: "
                f"{truncate(row['reason'] or '', 80)}"
            )
        if ban is not None:
            until = f"until {ban.expires_at:%Y-%m-%d}" if ban.expires_at else "until unbanned"
            lines.append(f"Banned {until}: {ban.reason or 'no reason given'}")
        await reply(interaction, "\n".join(lines))

    @mod.command(
        name="filter-add",
        description="Hold prompts containing a word or phrase (or re:regex) for review",
    )
    @app_commands.describe(pattern="A word or phrase (any case), or re: followed by a regex")
    async def filter_add(self, interaction: Interaction, pattern: Range[str, 1, 203]) -> None:
        assert interaction.guild_id is not None
        rule = await self.bot.filters.add(interaction.guild_id, pattern, interaction.user.id)
        await reply(
            interaction,
            f"Added filter #{rule.id}: `{rule.shown()}`. Matching prompts "
            "now wait for a moderator.",
        )

    @mod.command(name="filter-remove", description="Remove a prompt filter")
    @app_commands.describe(pattern="The filter as written, or its #number from /mod filter-list")
    async def filter_remove(self, interaction: Interaction, pattern: Range[str, 1, 203]) -> None:
        assert interaction.guild_id is not None
        removed = await self.bot.filters.remove(interaction.guild_id, pattern, interaction.user.id)
        if removed is not None:
            text = f"Removed filter #{removed.id}: `{truncate(removed.shown(), 300)}`."
        elif pattern.strip().startswith("#"):
            text = (
                f"`{truncate(pattern.strip(), 100)}` is not in the filter "
                "(nor a number /mod filter-list shows)."
            )
        else:
            text = f"`{truncate(pattern, 100)}` is not in the filter."
        await reply(interaction, text)

    @mod.command(name="filter-list", description="The prompt filters of this server")
    async def filter_list(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        rules = await self.bot.filters.rules(interaction.guild_id)
        lines = [f"#{r.id} `{r.shown()}`" for r in rules]
        shown, size = [], 0
        for line in lines:  # whole lines within a message's 2,000 characters
            if size + len(line) + 1 > 1900:
                break
            shown.append(line)
            size += len(line) + 1
        if len(shown) == len(lines):
            await reply(interaction, "\n".join(lines) or "No filters.")
            return
        # Cut short, a moderator could not see (nor remove) the rest: all of them as a file.
        shown.append(f"… and {len(lines) - len(shown)} more; all {len(lines)} in the file.")
        data = "\n".join(lines).encode()
        file = MemoryFile(data, f"filters-{interaction.guild_id}.txt")
        await reply(interaction, "\n".join(shown), file=file)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Moderation(bot))
