"""/quota report: the spending chart and the top spenders, answered privately to an admin.

The figures come from bot.store.reports (what "spent" means is written there) and the image
from bot.reports.chart; this module only finds the spenders' names and sends the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import discord

from bot.discord_adapter.files import MemoryFile
from bot.discord_adapter.interaction import Interaction, think
from bot.discord_adapter.replies import reply
from bot.reports.chart import render
from bot.services import Services
from bot.store.reports import Spending, SpendingReports


async def answer_report(interaction: Interaction, services: Services, days: int) -> None:
    assert interaction.guild_id is not None
    await think(interaction)
    report = await SpendingReports(services.db, services.clock).spending(interaction.guild_id, days)
    if not report.total and not report.server_paid and not report.held:
        await reply(interaction, f"No spending in the {last(days)}.")
        return
    if not report.total:  # only the server's own checks or holds: nothing to draw
        await reply(interaction, summary(report, days))
        return
    names = await display_names(interaction.guild, (s.member_id for s in report.top))
    png = await asyncio.to_thread(render, report, names)  # a few tens of ms of drawing
    file = MemoryFile(png, f"spending-{interaction.guild_id}-{days}d.png")
    await reply(
        interaction,
        summary(report, days),
        file=file,
        allowed_mentions=discord.AllowedMentions.none(),
    )


def last(days: int) -> str:
    return "last day (UTC)" if days == 1 else f"last {days} days (UTC)"


def summary(report: Spending, days: int) -> str:
    totals = report.model_totals()
    by_model = " · ".join(f"{m} {totals[m]:,}" for m in report.models)
    spent = f"Buzz spent in the {last(days)}: **{report.total:,}**"
    if by_model:
        spent += f" ({by_model})"
    lines = [spent]
    if report.top:
        lines.append("Top spenders:")
        lines += [f"{n}. <@{s.member_id}> — {s.amount:,}" for n, s in enumerate(report.top, 1)]
    if report.server_paid:
        lines.append(f"Paid by the server for AI pre-moderation checks: **{report.server_paid:,}**")
    if report.held:  # not spent yet: settled (and counted) on the day each job was asked
        lines.append(f"Held by running jobs (not settled yet): **{report.held:,}**")
    return "\n".join(lines)


async def display_names(guild: discord.Guild | None, ids: Iterable[int]) -> dict[int, str]:
    """Names for the chart; a member who left (or cannot be fetched) is shown by id."""
    names: dict[int, str] = {}
    if guild is None:
        return names
    for member_id in ids:
        member = guild.get_member(member_id)
        if member is None:
            try:
                member = await guild.fetch_member(member_id)
            except discord.HTTPException:
                continue
        names[member_id] = member.display_name
    return names
