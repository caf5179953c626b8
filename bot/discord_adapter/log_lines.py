"""The guild's log channel: one line per finished job, if it has one. Posted in the
background by the publisher (a slow or rate-limited log channel holds up nothing).

A log channel the bot can no longer post in (deleted, its access or Send Messages taken)
loses every line, so the server's owner is told once per problem — not once per job — and
again if the problem comes back after it was fixed."""

from __future__ import annotations

import logging

import discord

from bot.discord_adapter.embeds import link, operation_word
from bot.discord_adapter.owner_notices import Told, tell_owner
from bot.discord_adapter.result_routes import ResultRoutes
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStatus

log = logging.getLogger(__name__)

J = JobStatus


def log_line(job: JobRecord) -> str:
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
    return text


class LogLines:
    def __init__(self, bot: discord.Client, guilds: GuildStore, routes: ResultRoutes) -> None:
        self.bot, self.guilds, self.routes = bot, guilds, routes
        # The problem each guild's owner was last told of (kept while it lasts): its key
        # (what went wrong, in which channel), the channel and why, in words.
        self._told: dict[int, tuple[str, int, str]] = {}

    def problem(self, guild_id: int, channel_id: int | None) -> str | None:
        """Why log lines are not posted in the guild's log channel `channel_id`, if known
        (shown to admins: the owner may take no DMs)."""
        told = self._told.get(guild_id)
        return told[2] if told is not None and told[1] == channel_id else None

    async def post(self, job: JobRecord) -> None:
        """One line per finished job in the guild's log channel, if it has one."""
        settings = await self.guilds.settings(job.guild_id)
        channel_id = settings.log_channel_id
        if channel_id is None:
            return
        try:
            channel = await self.routes.channel(channel_id)
            await channel.send(log_line(job), allowed_mentions=discord.AllowedMentions.none())
        except (discord.Forbidden, discord.NotFound) as exc:
            await self._refused(job, channel_id, exc)
            return
        except discord.HTTPException as exc:
            log.info("job %s: log line not posted (%s)", job.id, exc.status)
            return
        except discord.RateLimited:
            log.info("job %s: log line not posted (rate limited)", job.id)
            return
        except NETWORK_ERRORS as exc:
            log.warning("job %s: log line not posted (%s)", job.id, type(exc).__name__)
            return
        self._told.pop(job.guild_id, None)  # it works (again): a new problem is told

    async def _refused(
        self, job: JobRecord, channel_id: int, exc: discord.Forbidden | discord.NotFound
    ) -> None:
        guild_id = job.guild_id
        if self.bot.get_guild(guild_id) is None:  # out of the server: not the channel's fault
            log.info("job %s: log line not posted (not in the server)", job.id)
            return
        problem = f"{'access' if exc.status == 403 else 'gone'}:{channel_id}"
        earlier = self._told.get(guild_id)
        if earlier is not None and earlier[0] == problem:
            log.info("job %s: log line not posted (%s)", job.id, exc.status)
            return
        why = "it was deleted" if exc.status == 404 else f"I may not post there ({exc.code})"
        self._told[guild_id] = (problem, channel_id, why)
        log.warning(
            "guild %s: log lines cannot be posted in channel %s: %s", guild_id, channel_id, why
        )
        told = await tell_owner(
            self.bot,
            guild_id,
            f"I cannot post the job log lines of {{guild}} in <#{channel_id}>: {why}, so they "
            "are being lost. Choose a log channel with `/settings log-channel` (and let me send "
            "messages there), or run it without a channel to stop the log.",
        )
        if told is Told.NOT_NOW:  # not told after all: the next line tries again
            self._told.pop(guild_id, None)
