"""The discord.py Bot: built with the services from main(), it wires the engine to Discord,
loads the cogs, syncs the commands, and keeps one error path for every interaction."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import heartbeat
from bot.discord_adapter.board import ReviewBoard
from bot.discord_adapter.buttons import PERSISTENT
from bot.discord_adapter.flow import RequestFlow
from bot.discord_adapter.publisher import DiscordPublisher
from bot.discord_adapter.replies import report_error
from bot.filters import PromptFilters
from bot.media.limits import MediaLimits
from bot.metrics_server import MetricsServer
from bot.review import ReviewService
from bot.services import Services
from bot.store.db import utcnow
from bot.store.retention import prune_daily

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.create",
    "cogs.edit",
    "cogs.buzz",
    "cogs.moderation",
    "cogs.quota",
    "cogs.settings",
)


class DevGuildUnavailable(Exception):
    """BOT_DEV_GUILD names a server the bot cannot register commands in."""


class BotTree(app_commands.CommandTree):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error)


class ImageBot(commands.Bot):
    def __init__(
        self,
        services: Services,
        *,
        sync_global: bool = False,
        media_hosts: tuple[str, ...] | None = None,
        **options: Any,
    ) -> None:
        intents = discord.Intents.default()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=BotTree,
            help_command=None,
            **options,
        )
        self.services = services
        settings = services.settings
        self.sync_global = sync_global
        hosts = media_hosts or tuple(settings.media.attachment_hosts)
        self.media_limits = MediaLimits.from_settings(settings.media, hosts)
        self.publisher = DiscordPublisher(
            self,
            services.ledger,
            services.guilds,
            images=services.images,
            token_margin=timedelta(seconds=settings.jobs.token_margin_seconds),
            edit_interval=settings.jobs.status_edit_interval_seconds,
            clock=services.clock,
        )
        self.filters = PromptFilters(services.db, services.clock)
        self.board = ReviewBoard(self, services)
        self.engine = services.engine(
            self.publisher, reviews=self.board, alerts=self, prompt_filter=self.filters.match
        )
        self.review = ReviewService(
            services.db,
            self.engine,
            services.jobs,
            services.ledger,
            services.moderation,
            services.guilds,
            services.clock,
            metrics=services.metrics,
        )
        # The path every image request takes (slash command, button or modal).
        self.flow = RequestFlow(self)
        self._heartbeat: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._alerted_owner: set[str] = set()
        self._started = False
        self._stopping = False
        # /metrics and /healthz when metrics.port is set: served from setup_hook until close.
        self.metrics_server = MetricsServer.from_settings(
            services.metrics, settings.metrics, self.unready_reason
        )

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*PERSISTENT)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self._heartbeat = asyncio.create_task(self._beat(), name="heartbeat")
        self._pruner = asyncio.create_task(
            prune_daily(self.services.db, self.services.retention.days, self.services.clock),
            name="retention",
        )
        await self.metrics_server.start()
        await self.sync_commands()
        if self.services.simulated:
            log.warning(
                "SIMULATOR MODE: no CIVITAI_TOKEN is set. Images are placeholders, no Buzz is "
                "spent upstream, and every result says so."
            )

    async def sync_commands(self) -> None:
        dev_guild = self.services.settings.discord.dev_guild
        if dev_guild:
            guild = discord.Object(id=dev_guild)
            self.tree.copy_global_to(guild=guild)
            try:
                synced = await self.tree.sync(guild=guild)
            except discord.Forbidden as exc:
                raise DevGuildUnavailable(
                    f"cannot register the slash commands in the server {dev_guild} "
                    f"(BOT_DEV_GUILD): Discord says the bot has no access there ({exc.code}). "
                    "Invite the bot to that server with the applications.commands scope, or "
                    "unset BOT_DEV_GUILD"
                ) from None
            log.info("synced %d commands to guild %s", len(synced), dev_guild)
        elif self.sync_global:
            synced = await self.tree.sync()
            log.info("synced %d commands globally", len(synced))

    async def on_ready(self) -> None:
        log.info("logged in as %s in %d guild(s)", self.user, len(self.guilds))
        await self._write_beat()  # healthy as soon as connected, not 30 s later
        if not self._started:
            # Only now: resumed jobs may end at once, and their status messages, results and
            # review items need the guilds and channels Discord has just sent.
            self._started = True
            await self.engine.start()
            for guild in self.guilds:
                await self.board.post_pending(guild.id)

    async def close(self) -> None:
        self._stopping = True  # /healthz says so while the engine winds down
        for task in (self._heartbeat, self._pruner):
            if task is not None:
                task.cancel()
        await self.engine.stop()
        await self.publisher.close()
        await super().close()
        await self.metrics_server.stop()
        await self._write_beat(stopped=True)  # unhealthy at once, not when the beat goes stale

    def unready_reason(self) -> str | None:
        """Why /healthz answers 503; None while connected to Discord and ready."""
        if self._stopping or self.is_closed():
            return "shutting down"
        if not self.is_ready():
            return "not connected to Discord yet"
        if self.ws is None or not self.ws.open:
            return "reconnecting to Discord"
        return None

    async def on_operator_alert(self, key: str, message: str) -> None:
        """Something only the operator can fix: tell the application's owner once, by DM."""
        if key in self._alerted_owner:
            return
        self._alerted_owner.add(key)
        try:
            info = await self.application_info()
            owner = info.owner
            await owner.send(f"civitai-image-bot needs attention: {message}")
        except (discord.HTTPException, AttributeError) as exc:
            log.warning("could not DM the application owner: %s", exc)

    async def _beat(self) -> None:
        while True:
            await self._write_beat()
            await asyncio.sleep(heartbeat.EVERY)

    async def _write_beat(self, *, stopped: bool = False) -> None:
        beat = heartbeat.Beat(
            at=utcnow(),
            ready=self.is_ready() and not stopped,
            guilds=len(self.guilds),
            jobs_running=self.engine.running(),
            stopped=stopped,
        )
        path = heartbeat.heartbeat_path(self.services.settings.database.path)
        try:
            await asyncio.to_thread(heartbeat.write, path, beat)
        except OSError as exc:
            log.warning("heartbeat not written: %s", exc)
