"""The guild's log channel: one line per finished job, if it has one. Posted in the
background by the publisher (a slow or rate-limited log channel holds up nothing)."""

from __future__ import annotations

import logging

import discord

from bot.discord_adapter.embeds import link, operation_word
from bot.discord_adapter.result_routes import ResultRoutes
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStatus

log = logging.getLogger(__name__)

J = JobStatus


async def post_log_line(guilds: GuildStore, routes: ResultRoutes, job: JobRecord) -> None:
    """One line per finished job in the guild's log channel, if it has one."""
    settings = await guilds.settings(job.guild_id)
    if settings.log_channel_id is None:
        return
    icon = {
        J.DONE: "✅",
        J.BLOCKED: "🚫",
        J.REJECTED: "🚫",
        J.CANCELED: "⏹️",
        J.EXPIRED: "⌛",
    }.get(job.status, "❌")
    text = (
        f"{icon} <@{job.member_id}> · {job.model} {operation_word(job)} · "
        f"{job.charged or 0:,} Buzz · {job.status.value} · job `{job.id}`"
    )
    where = job.delivered_message_ids[0] if job.delivered_message_ids else job.status_message_id
    if where:
        text += f" · [open]({link(job.guild_id, job.channel_id, where)})"
    try:
        channel = await routes.channel(settings.log_channel_id)
        await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as exc:
        log.info("job %s: log line not posted (%s)", job.id, exc.status)
    except discord.RateLimited:
        log.info("job %s: log line not posted (rate limited)", job.id)
    except NETWORK_ERRORS as exc:
        log.warning("job %s: log line not posted (%s)", job.id, type(exc).__name__)
