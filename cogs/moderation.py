"""/mod commands, the review items' buttons, and members' appeals.

Every command and button checks at runtime that the user is a moderator (Manage Messages or
the configured moderator role); Discord's default permissions only hide the commands.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Range
from discord.ext import commands

from bot.app import UserFacingError, reply, report_error
from bot.board import REVIEW_ID, REVIEW_TEMPLATE
from bot.delivery import APPEAL_ID, APPEAL_TEMPLATE, link, truncate
from bot.review import Action
from bot.store.moderation import MAX_BAN_DAYS
from cogs.checks import require_moderator

if TYPE_CHECKING:
    from bot.app import ImageBot


def bot_of(interaction: discord.Interaction) -> ImageBot:
    return interaction.client  # type: ignore[return-value]


async def decide(
    interaction: discord.Interaction,
    item_id: int,
    action: Action,
    *,
    days: int | None = None,
    reason: str | None = None,
) -> None:
    """A moderator's decision on an item: applied once, shown on the item, told to them."""
    bot = bot_of(interaction)
    await require_moderator(interaction, bot.services.guilds)
    assert interaction.guild_id is not None
    # Answer Discord now: the decision, the member's message and the item's edit follow.
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
    outcome = await bot.review.act(
        interaction.guild_id, item_id, action, interaction.user.id, days=days, reason=reason
    )
    await bot.board.refresh(item_id)
    await reply(interaction, f"Review #{item_id}: {outcome.summary}.")


class ReviewButton(discord.ui.DynamicItem[discord.ui.Button], template=REVIEW_TEMPLATE):
    def __init__(self, action: str, item_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=action.title(), custom_id=REVIEW_ID.format(action=action, item=item_id)
            )
        )
        self.action, self.item_id = Action(action), item_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> ReviewButton:
        return cls(match["action"], int(match["item"]))

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            if self.action is Action.BAN:
                await require_moderator(interaction, bot_of(interaction).services.guilds)
                await interaction.response.send_modal(BanModal(self.item_id))
                return
            await decide(interaction, self.item_id, self.action)
        except Exception as error:
            await report_error(interaction, error)


class BanModal(discord.ui.Modal, title="Ban from the bot"):
    days = discord.ui.TextInput(
        label=f"Days (1-{MAX_BAN_DAYS}; empty = until unbanned)",
        custom_id="days",
        required=False,
        max_length=4,
    )
    reason = discord.ui.TextInput(
        label="Reason (the audit log keeps it)", custom_id="reason", required=False, max_length=300
    )

    def __init__(self, item_id: int) -> None:
        super().__init__(timeout=600)
        self.item_id = item_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text = self.days.value.strip()
        # isascii: "²" and other digits str.isdigit() accepts are not numbers int() reads.
        if text and (not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_BAN_DAYS):
            raise UserFacingError(f"**days**: a whole number from 1 to {MAX_BAN_DAYS}, or empty.")
        await decide(
            interaction,
            self.item_id,
            Action.BAN,
            days=int(text) if text else None,
            reason=self.reason.value.strip() or None,
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await report_error(interaction, error)


class AppealButton(discord.ui.DynamicItem[discord.ui.Button], template=APPEAL_TEMPLATE):
    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Appeal", custom_id=APPEAL_ID.format(job=job_id)))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> AppealButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            bot = bot_of(interaction)
            job = await bot.services.jobs.get(self.job_id)
            if job is None or job.guild_id != interaction.guild_id:
                raise UserFacingError("I cannot find that job here any more.")
            if job.member_id != interaction.user.id:
                raise UserFacingError("Only the member whose job this is can appeal.")
            item = await bot.services.moderation.item_for_job(job.id)
            if item is None:
                raise UserFacingError("There is nothing to appeal for this job.")
            if not item.open:
                raise UserFacingError(f"This was already reviewed: {item.status}.")
            await interaction.response.send_modal(AppealModal(job.id, item.id))
        except Exception as error:
            await report_error(interaction, error)


class AppealModal(discord.ui.Modal, title="Appeal to the moderators"):
    note = discord.ui.TextInput(
        label="What should the moderators know?",
        custom_id="note",
        style=discord.TextStyle.paragraph,
        max_length=1000,
    )

    def __init__(self, job_id: str, item_id: int) -> None:
        super().__init__(timeout=900)
        self.job_id, self.item_id = job_id, item_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        await bot.review.appeal(
            interaction.guild_id, self.job_id, interaction.user.id, self.note.value
        )
        await bot.board.refresh(self.item_id)
        await reply(
            interaction,
            "Your appeal was added to the review. You will see the "
            "moderators' decision on your request's message.",
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await report_error(interaction, error)


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
    async def queue(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        items = await self.services.moderation.open_items(interaction.guild_id, limit=200)
        if not items:
            await reply(interaction, "Nothing waits for review.")
            return
        lines = []
        for item in items:
            job = await self.services.jobs.get(item.job_id)
            kind = "held" if item.kind == "held" else "blocked"
            where = (
                f"[open]({link(item.guild_id, item.message_channel_id, item.message_id)})"
                if item.message_id and item.message_channel_id
                else "not posted"
            )
            who = f"<@{job.member_id}>" if job else "?"
            prompt = truncate(job.prompt, 50) if job else ""
            appeal = " · appealed" if item.appeal_note else ""
            lines.append(f"#{item.id} {kind} · {who} · {prompt} · {where}{appeal}")
        shown, size = [], 0
        for line in lines:  # an embed's description holds 4,096 characters
            if size + len(line) + 1 > 3900:
                break
            shown.append(line)
            size += len(line) + 1
        more = len(lines) - len(shown)
        if more:
            shown.append(f"… and {more} more; decide these first")
        embed = discord.Embed(
            title=f"Review queue ({len(lines)} open)",
            description="\n".join(shown),
            colour=discord.Colour.orange(),
        )
        await reply(interaction, "", embed=embed)

    @mod.command(name="ban", description="Ban a member from using the bot here")
    @app_commands.describe(
        days=f"How long (1-{MAX_BAN_DAYS} days); empty = until unbanned",
        reason="Kept in the audit log",
    )
    async def ban(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        days: Range[int, 1, MAX_BAN_DAYS] | None = None,
        reason: Range[str, 1, 300] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        ban = await self.services.db.write(
            self.services.moderation.ban,
            interaction.guild_id,
            member.id,
            actor_id=interaction.user.id,
            reason=reason,
            days=days,
        )
        until = f" until {ban.expires_at:%Y-%m-%d %H:%M} UTC" if ban.expires_at else ""
        await reply(interaction, f"{member.mention} can no longer use the bot here{until}.")

    @mod.command(name="unban", description="Let a member use the bot here again")
    async def unban(self, interaction: discord.Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        lifted = await self.services.db.write(
            self.services.moderation.unban,
            interaction.guild_id,
            member.id,
            actor_id=interaction.user.id,
        )
        text = "can use the bot again" if lifted else "was not banned here"
        await reply(interaction, f"{member.mention} {text}.")

    @mod.command(name="strikes", description="A member's strikes and ban")
    async def strikes(self, interaction: discord.Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        settings = await self.services.guilds.get(interaction.guild_id)
        window = settings.strike_window_days
        count = await self.services.moderation.strikes_in_window(
            interaction.guild_id, member.id, window
        )
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
    async def filter_add(
        self, interaction: discord.Interaction, pattern: Range[str, 1, 203]
    ) -> None:
        assert interaction.guild_id is not None
        rule = await self.bot.filters.add(interaction.guild_id, pattern, interaction.user.id)
        await reply(
            interaction,
            f"Added filter #{rule.id}: `{rule.shown()}`. Matching prompts "
            "now wait for a moderator.",
        )

    @mod.command(name="filter-remove", description="Remove a prompt filter")
    async def filter_remove(
        self, interaction: discord.Interaction, pattern: Range[str, 1, 203]
    ) -> None:
        assert interaction.guild_id is not None
        removed = await self.bot.filters.remove(interaction.guild_id, pattern, interaction.user.id)
        text = "Removed." if removed else f"`{truncate(pattern, 100)}` is not in the filter."
        await reply(interaction, text)

    @mod.command(name="filter-list", description="The prompt filters of this server")
    async def filter_list(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        rules = await self.bot.filters.rules(interaction.guild_id)
        text = "\n".join(f"#{r.id} `{r.shown()}`" for r in rules) or "No filters."
        await reply(interaction, truncate(text, 1900))


async def setup(bot: ImageBot) -> None:
    bot.add_dynamic_items(ReviewButton, AppealButton)
    await bot.add_cog(Moderation(bot))
