"""/buzz balance|history, /jobs and /cancel: a member's Buzz and jobs, answered privately."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from bot.discord_adapter.access import is_moderator, requester, role_ids
from bot.discord_adapter.canceling import CANCELABLE, cancel_job
from bot.discord_adapter.embeds import (
    allowance_source,
    as_written,
    charge_words,
    link,
    link_in_dm,
    status_line,
    truncate,
)
from bot.discord_adapter.interaction import Interaction, think
from bot.discord_adapter.replies import UserFacingError, reply
from bot.store.periods import describe_moment, period_word

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot


class Buzz(commands.Cog):
    buzz = app_commands.Group(name="buzz", description="Your Buzz for images", guild_only=True)

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.services = bot.services

    async def _other_allowed(
        self, interaction: Interaction, member: discord.Member | None
    ) -> discord.abc.User:
        if member is None or member.id == interaction.user.id:
            return interaction.user
        assert interaction.guild_id is not None
        settings = await self.services.guilds.settings(interaction.guild_id)
        if not is_moderator(interaction, settings):
            raise UserFacingError("Only moderators can look at another member's Buzz or jobs.")
        return member

    @buzz.command(name="balance", description="Your Buzz: balance, allowance and next refill")
    @app_commands.describe(member="(moderators) someone else's balance")
    async def balance(self, interaction: Interaction, member: discord.Member | None = None) -> None:
        assert interaction.guild_id is not None
        who = await self._other_allowed(interaction, member)
        roles = role_ids(who)
        b = await self.services.ledger.balance(interaction.guild_id, who.id, roles)
        now = self.services.clock()
        lines = [f"**{b.available:,} Buzz** available"]
        if b.pending_refill:
            lines.append(f"(includes this period's refill of {b.pending_refill:,}, added on use)")
        if b.held:
            lines.append(f"{b.held:,} held by running jobs")
        if b.allowance.amount:
            lines.append(
                f"Allowance: {b.allowance.amount:,} {period_word(b.allowance.period)}"
                f" ({allowance_source(b.allowance)})"
            )
            if b.next_refill:
                lines.append(f"Next refill: {describe_moment(b.next_refill, now)}")
        elif b.allowance.source == "bot default":
            lines.append("No allowance is set for you here; an admin can set one with /quota.")
        else:  # an admin set it to 0: not "nothing set"
            lines.append(f"Allowance: 0 ({b.allowance.source})")
        if b.grant_balance:
            lines.append(f"{b.grant_balance:,} of it from grants (they do not expire)")
        # A one-off allowance ('none') has no periods: what it counts is everything spent.
        spent = "so far" if b.allowance.period == "none" else "this period"
        lines.append(f"Spent {spent}: {b.spent_this_period:,}")
        title = "Your Buzz" if who.id == interaction.user.id else f"Buzz of {who.display_name}"
        embed = discord.Embed(
            title=title, description="\n".join(lines), colour=discord.Colour.gold()
        )
        await reply(interaction, "", embed=embed)

    @buzz.command(name="history", description="Your latest Buzz movements")
    async def history(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        entries = await self.services.ledger.history(interaction.guild_id, interaction.user.id, 15)
        if not entries:
            await reply(interaction, "No Buzz movements yet.")
            return
        words = {
            "grant": "granted",
            "refill": "allowance refill",
            "hold": "held for a job",
            "capture": "charged",
            "release": "released",
            "refund": "refunded",
            "adjust": "taken by an admin",
        }
        lines = []
        for e in entries:
            when = f"<t:{int(_parse(e.created_at))}:d>"
            job = f" · job `{e.job_id}`" if e.job_id else ""
            why = f" · {_roles_named(truncate(e.reason, 60))}" if e.reason else ""
            delta = f"{e.delta:+,}" if e.delta else f"({e.amount:,})"
            what = words.get(e.kind, e.kind)
            if e.kind == "adjust" and e.job_id:  # the ledger's own for a job: no admin took it
                what = "expired"
            lines.append(f"{when} {delta} {what}{job}{why}")
        embed = discord.Embed(
            title="Your Buzz history", description="\n".join(lines), colour=discord.Colour.gold()
        )
        await reply(interaction, "", embed=embed)

    @app_commands.command(name="jobs", description="Your recent and running image jobs")
    @app_commands.guild_only()
    @app_commands.describe(member="(moderators) someone else's jobs")
    async def jobs(self, interaction: Interaction, member: discord.Member | None = None) -> None:
        assert interaction.guild_id is not None
        who = await self._other_allowed(interaction, member)
        found = await self.services.jobs.recent(interaction.guild_id, who.id, limit=10)
        if not found:
            await reply(interaction, "No jobs yet.")
            return
        # A result kept from its channel, then released: its ending no longer says where it is.
        released = await self.services.moderation.posted_releases([j.id for j in found])
        lines = []
        for job in found:
            where = ""
            status = truncate(status_line(job, job.error, privately=job.dm_reason), 120)
            if job.delivered_message_ids:
                first = job.delivered_message_ids[0]
                url = link(job.guild_id, job.channel_id, first)
                if job.dm_channel_id is not None:  # sent by DM: the link opens the DM
                    url = link_in_dm(job.dm_channel_id, first)
                where = f" · [result]({url})"
            if job.id in released:
                status, where = _release_line(job.guild_id, *released[job.id])
            hold = await self.services.ledger.hold(job.id) if job.charged else None
            if hold is not None and hold.refunded:  # a moderator gave some or all of it back
                status += f" · {charge_words(hold.charged, hold.refunded)}"
            lines.append(
                f"`{job.id}` {job.model} · {as_written(job.prompt, 40)}\n  {status}{where}"
            )
        embed = discord.Embed(
            title="Jobs", description="\n".join(lines), colour=discord.Colour.blurple()
        )
        await reply(interaction, "", embed=embed)

    @app_commands.command(name="cancel", description="Stop one of your running jobs")
    @app_commands.guild_only()
    @app_commands.describe(job="The job to stop (your running jobs are suggested)")
    async def cancel(self, interaction: Interaction, job: str) -> None:
        await think(interaction)
        who = await requester(interaction, self.services.guilds)
        record = await self.services.jobs.job(job.strip())
        if record is None or record.guild_id != interaction.guild_id:
            raise UserFacingError(
                f"**job**: there is no job `{truncate(job, 30)}` here; choose one of your running "
                "jobs from the list offered as you type (/jobs shows their ids)."
            )
        await reply(interaction, await cancel_job(self.bot, record.id, who))

    @cancel.autocomplete("job")
    async def running_jobs(self, interaction: Interaction, current: str) -> list[Choice[str]]:
        if interaction.guild_id is None:
            return []
        # Not active_only: that leaves out jobs held for review, which can be canceled too.
        found = await self.services.jobs.recent(interaction.guild_id, interaction.user.id, limit=50)
        choices = []
        for job in found:
            if job.status in CANCELABLE:
                name = truncate(f"{job.id} · {job.model} · {job.prompt}", 100)
                if current.lower() in name.lower():
                    choices.append(Choice(name=name, value=job.id))
        return choices[:25]


def _release_line(guild_id: int, channel_id: int | None, messages: list[int]) -> tuple[str, str]:
    """A released result's status in /jobs, and its link (none for a DM)."""
    if channel_id is None:
        return "✅ A moderator reviewed it and sent the result to you by DM", ""
    where = f" · [result]({link(guild_id, channel_id, messages[0])})" if messages else ""
    return f"✅ A moderator reviewed it and released the result in <#{channel_id}>", where


def _parse(created_at: str) -> float:
    return datetime.fromisoformat(created_at).timestamp()


# A refill's reason as the ledger keeps it: "weekly allowance (role 1576…)".
_ROLE_ID = re.compile(r"\(role (\d{15,21})\)")


def _roles_named(reason: str) -> str:
    """A role's bare id as its mention: Discord shows the name (a private answer pings no one)."""
    return _ROLE_ID.sub(r"(role <@&\1>)", reason)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Buzz(bot))
