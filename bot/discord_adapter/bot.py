"""The discord.py Bot: built with the services from main(), it wires the engine to Discord,
loads the cogs, syncs the commands, and keeps one error path for every interaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import heartbeat
from bot.catalog.tools import IMAGE_TOOLS
from bot.discord_adapter import server_errors
from bot.discord_adapter.board import ReviewBoard
from bot.discord_adapter.buttons import PERSISTENT
from bot.discord_adapter.enhance import EnhanceFlow
from bot.discord_adapter.flow import RequestFlow
from bot.discord_adapter.mature import MatureDesk
from bot.discord_adapter.modals import FORM_GONE, modal_open
from bot.discord_adapter.offers import OfferBoard
from bot.discord_adapter.preparing import Preparations
from bot.discord_adapter.publisher import DiscordPublisher
from bot.discord_adapter.question_sweep import sweep_questions
from bot.discord_adapter.ratelimits import RATE_LIMIT_WAIT
from bot.discord_adapter.replies import reply, report_error
from bot.discord_adapter.tool_flow import ToolFlow
from bot.discord_adapter.under_way import ANSWER_WAIT, finish_interactions
from bot.discord_adapter.unshown import bot_role_changed, bot_roles_changed
from bot.filters import PromptFilters
from bot.media.limits import MediaLimits
from bot.metrics_server import MetricsServer
from bot.release import Releases
from bot.review import ReviewService
from bot.services import Services
from bot.store.db import utcnow
from bot.store.previews import ShownPreviews
from bot.store.questions import Questions
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


DEV_GUILD = "dev_guild"


def commands_digest(tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> str:
    """A fingerprint of the commands as they would be registered (to sync only on change)."""
    payload = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class DevGuildUnavailable(Exception):
    """BOT_DEV_GUILD names a server the bot cannot register commands in."""


class BotTree(app_commands.CommandTree):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error)


class ImageBot(commands.Bot):
    start_retry = 5.0  # seconds between looks at a database locked at the start

    def __init__(
        self,
        services: Services,
        *,
        sync_global: bool = False,
        media_hosts: tuple[str, ...] | None = None,
        **options: Any,
    ) -> None:
        intents = discord.Intents.default()
        # A long 429 raises discord.RateLimited rather than being slept out (ratelimits.py).
        options.setdefault("max_ratelimit_timeout", RATE_LIMIT_WAIT)
        options.setdefault("http_trace", server_errors.trace_config())
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
            max_pixels=settings.media.max_pixels,
            clock=services.clock,
            jobs=services.jobs,
            shown=ShownPreviews(services.db, services.clock),
        )
        self.filters = PromptFilters(services.db, services.clock)
        self.preparing = Preparations(services.guilds)
        self.board = ReviewBoard(self, services)
        # Private notices of results kept from a channel, and their release by moderators.
        self.mature = MatureDesk(self, services.images, services.clock)
        self.engine = services.engine(
            self.publisher,
            reviews=self.board,
            alerts=self,
            prompt_filter=self.filters.match,
            notices=self.mature,
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
            releases=Releases(
                services.db,
                self.engine,
                services.moderation,
                services.safety,
                self.mature,
                services.clock,
            ),
        )
        # What members were asked and have not answered (kept across restarts).
        self.questions = Questions(services.db, services.clock)
        # The path every image request takes (slash command, button or modal).
        self.flow = RequestFlow(self)
        # Upscale / Remove background, prompt enhancement, and offers after a refusal.
        self.tools = ToolFlow(self)
        self.enhance = EnhanceFlow(self)
        self.offers = OfferBoard(self)
        self.publisher.tools = frozenset(t for t in IMAGE_TOOLS if self.engine.tools.supports(t))
        self.publisher.streams_previews = getattr(self.engine.parts.lane, "streams_previews", False)
        self._heartbeat: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._alerted_owner: set[str] = set()
        self._started = False
        self._stopping = False
        # Seconds an orderly stop waits for the interactions under way (under_way.py).
        self.answer_wait = ANSWER_WAIT
        # Why the start waits for the database (health says so, not the last run's "stopped").
        self._waiting: str | None = None
        # /metrics and /healthz when metrics.port is set: served from setup_hook until close.
        self.metrics_server = MetricsServer.from_settings(
            services.metrics, settings.metrics, self.unready_reason
        )

    async def setup_hook(self) -> None:
        # Everything below writes (commands' digests, resumed jobs, releases): a lock held
        # by another process now would fail the start half-way.
        if not await self.services.db.wait_writable(
            self.start_retry, self.is_closed, self._waiting_to_start
        ):
            return  # stopped while it waited: nothing to set up
        self._waiting = None
        self.add_dynamic_items(*PERSISTENT)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self._heartbeat = asyncio.create_task(self._beat(), name="heartbeat")
        self._pruner = asyncio.create_task(
            prune_daily(self.services.db, self.services.retention.days, self.services.clock),
            name="retention",
        )
        self._sweeper = asyncio.create_task(sweep_questions(self), name="questions")
        await self.metrics_server.start()
        await self.sync_commands()
        log.info("jobs run on the %s lane", self.services.provider)
        if self.services.simulated:
            missing = "OPENAI_API_KEY" if self.services.provider == "openai" else "CIVITAI_TOKEN"
            log.warning(
                "SIMULATOR MODE: no %s is set. Images are placeholders, nothing is spent "
                "upstream, and every result says so.",
                missing,
            )

    async def sync_commands(self) -> None:
        """Register the slash commands where they belong, only when they changed (or --sync):
        the dev guild's while BOT_DEV_GUILD is set, else globally — and a dev guild's
        commands are cleared when the bot goes global, so no command shows twice."""
        state = self.services.state
        dev_guild = self.services.settings.discord.dev_guild
        if dev_guild:
            guild = discord.Object(id=dev_guild)
            self.tree.copy_global_to(guild=guild)
            await self._sync_if_changed(f"commands:guild:{dev_guild}", guild)
            await state.set(DEV_GUILD, str(dev_guild))
            return
        previous = await state.get(DEV_GUILD)
        if previous is not None:
            await self._clear_guild(int(previous))
            await state.forget(DEV_GUILD)
            await state.forget(f"commands:guild:{previous}")
        await self._sync_if_changed("commands:global", None)

    async def _sync_if_changed(self, key: str, guild: discord.abc.Snowflake | None) -> None:
        digest = commands_digest(self.tree, guild)
        if not self.sync_global and await self.services.state.get(key) == digest:
            return
        try:
            synced = await self.tree.sync(guild=guild)
        except discord.Forbidden as exc:
            if guild is None:
                raise
            raise DevGuildUnavailable(
                f"cannot register the slash commands in the server {guild.id} "
                f"(BOT_DEV_GUILD): Discord says the bot has no access there ({exc.code}). "
                "Invite the bot to that server with the applications.commands scope, or "
                "unset BOT_DEV_GUILD"
            ) from None
        await self.services.state.set(key, digest)
        where = f"to guild {guild.id}" if guild is not None else "globally"
        log.info("registered %d commands %s", len(synced), where)

    async def _clear_guild(self, guild_id: int) -> None:
        guild = discord.Object(id=guild_id)
        self.tree.clear_commands(guild=guild)
        try:
            await self.tree.sync(guild=guild)
        except (discord.Forbidden, discord.NotFound) as exc:  # the bot left that server
            log.info("could not clear the old dev guild %s's commands (%s)", guild_id, exc.code)
        else:
            log.info("cleared the commands of the old dev guild %s", guild_id)

    async def on_ready(self) -> None:
        log.info("logged in as %s in %d guild(s)", self.user, len(self.guilds))
        await self._write_beat()  # healthy as soon as connected, not 30 s later
        if not self._started:
            # Only now: resumed jobs may end at once, and their status messages, results and
            # review items need the guilds and channels Discord has just sent.
            self._started = True
            # Before the jobs resume: their status edits take off what the last run left.
            await self.publisher.previews_left(self.services.jobs)
            await self.engine.start()
            for item_id in await self.review.resume_releases():
                await self.board.refresh(item_id)
            for guild in self.guilds:
                await self.board.post_pending(guild.id)

    async def on_disconnect(self) -> None:
        # Said at once, not at the next beat (an orderly stop writes its own, last one).
        if not self._stopping:
            await self._write_beat()

    async def on_resumed(self) -> None:
        if not self._stopping:
            await self._write_beat()

    def _live(self) -> bool:
        # Started and not stopping: a world change met during a stop waits for the next start.
        return self._started and not self._stopping

    async def on_guild_join(self, guild: discord.Guild) -> None:
        # Invited (back): the items that could not be posted while the bot was out of the
        # server are posted now, not at the next start. Its settings, allowances, ledger and
        # review items were kept meanwhile (docs/admin-guide.md).
        if self._live():
            await self.board.post_pending(guild.id)
            await self.publisher.unshown.show(guild.id)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        # Back from an outage (at start, on_ready posts them once the jobs are resumed).
        if self._live():
            await self.board.post_pending(guild.id)
            await self.publisher.unshown.show(guild.id)

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        # Its permissions there (and its threads') may be back: endings shown nowhere are shown.
        if self._live():
            await self.publisher.unshown.show(after.guild.id, after.id)

    async def on_guild_role_update(self, before: discord.Role, after: discord.Role) -> None:
        # A role of the bot's (or @everyone) may give it its channels back.
        if self._live() and bot_role_changed(after.guild, after):
            await self.publisher.unshown.show(after.guild.id)

    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        # Sent about the bot itself whatever its intents: a role given to it may do the same.
        if self._live() and bot_roles_changed(self, before, after):
            await self.publisher.unshown.show(after.guild.id)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        # Runs after discord.py handed a form to its modal (whose answer needs Discord's
        # round trip, so it is still open here): a form no modal took gets a clear answer.
        if interaction.type is discord.InteractionType.modal_submit and not modal_open(
            self, interaction
        ):
            await reply(interaction, FORM_GONE)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        # A review item's message deleted in the client: its buttons were the only way to
        # decide it, so the board posts it again.
        await self.board.on_message_deleted(payload.message_id)

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        for message_id in payload.message_ids:
            await self.board.on_message_deleted(message_id)

    async def close(self) -> None:
        self._stopping = True  # /healthz says so while the engine winds down
        await finish_interactions(self.answer_wait)  # answered while Discord is connected
        self.board.close()
        if self.review.releases is not None:
            self.review.releases.close()
        for task in (self._heartbeat, self._pruner, self._sweeper):
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
        if self.services.db.replaced is not None:  # every write refused until a restart
            return f"{self.services.db.replaced}; restart the bot on the database to keep"
        if not self.is_ready():
            return "not connected to Discord yet"
        if not self.gateway_open():
            return "reconnecting to Discord"
        return None

    def gateway_open(self) -> bool:
        return self.ws is not None and self.ws.open

    async def on_operator_alert(self, key: str, message: str) -> None:
        """Something only the operator can fix: tell the application's owner once, by DM."""
        if key in self._alerted_owner:
            return
        self._alerted_owner.add(key)
        try:
            info = await self.application_info()
            owner = info.owner
            await owner.send(f"civitai-image-bot needs attention: {message}")
        except (discord.HTTPException, discord.RateLimited, AttributeError) as exc:
            log.warning("could not DM the application owner: %s", exc)

    async def _beat(self) -> None:
        while True:
            # An idle bot writes nothing: a database file replaced under it is looked for here.
            replaced = await self.services.db.file_changed()
            if replaced is not None:
                await self.on_operator_alert("database-replaced", self._replaced_alert(replaced))
            await self._write_beat()
            await asyncio.sleep(heartbeat.EVERY)

    def _replaced_alert(self, replaced: str) -> str:
        kept = self.services.db.orphan
        saved = f"what it held is saved at {kept}" if kept else "see the log"
        return (
            f"{replaced}: every request is refused. Stop the bot, put back the database you "
            f"mean to keep ({saved}), and start it again."
        )

    async def _waiting_to_start(self, reason: str) -> None:
        self._waiting = reason
        await self._write_beat()

    async def _write_beat(self, *, stopped: bool = False) -> None:
        problem = self.services.db.replaced
        if problem is None and self._waiting is not None:
            problem = f"waiting to start: {self._waiting} (see the bot's log)"
        beat = heartbeat.Beat(
            at=utcnow(),
            # What /healthz says: not while reconnecting (is_ready() stays set through that).
            ready=self.unready_reason() is None and not stopped,
            guilds=len(self.guilds),
            jobs_running=self.engine.running(),
            stopped=stopped,
            problem=problem,
        )
        path = heartbeat.heartbeat_path(self.services.settings.database.path)
        try:
            await asyncio.to_thread(heartbeat.write, path, beat)
        except OSError as exc:
            log.warning("heartbeat not written: %s", exc)


class ShardedImageBot(ImageBot, commands.AutoShardedBot):
    """The same bot over several gateway shards in one process (BOT_DISCORD__SHARD_COUNT)."""

    def gateway_open(self) -> bool:
        # One connection per shard; the client's own `ws` stays None.
        shards = self.shards.values()
        return bool(shards) and not any(shard.is_closed() for shard in shards)


def make_bot(services: Services, *, sync_global: bool = False, **options: Any) -> ImageBot:
    """The bot the settings ask for: sharded when discord.shard_count is set."""
    shards = services.settings.discord.shard_count
    if shards:
        return ShardedImageBot(services, sync_global=sync_global, shard_count=shards, **options)
    return ImageBot(services, sync_global=sync_global, **options)
