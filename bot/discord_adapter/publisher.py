"""Delivery to Discord (the engine's Publisher): the member's status message, edited as the job
moves (endings at once), and the result, fitted to the upload limit and posted by the first route
that takes it (result_routes.py); its embed footer names the job, so a post is found again after
a restart (exactly-once). Its buttons are the persistent ones (buttons/)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import discord

from bot.catalog.tools import Tool
from bot.discord_adapter import server_errors
from bot.discord_adapter.buttons.job import status_view
from bot.discord_adapter.earlier_posts import earlier_delivery, earlier_status
from bot.discord_adapter.embeds import result_embed, status_embed
from bot.discord_adapter.enhance_post import post_choice, status_content
from bot.discord_adapter.files import MemoryFile
from bot.discord_adapter.log_lines import LogLines
from bot.discord_adapter.previews import Previews, preview_name
from bot.discord_adapter.private_endings import tell_privately
from bot.discord_adapter.replying import SourceGone
from bot.discord_adapter.result_routes import ResultRoutes
from bot.discord_adapter.unshown import UnshownEndings
from bot.discord_adapter.uploads import (
    MESSAGE_BYTES,
    NETWORK_ERRORS,
    TooLarge,
    fit_all,
    split,
)
from bot.engine.publisher import PostFailed, ResultImage, StatusUpdate
from bot.media.fit import FittedImage
from bot.media.pool import ImagePool
from bot.media.preview import fit_preview
from bot.store.db import StoreBusy, utcnow
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStatus, JobStore
from bot.store.ledger import Ledger
from bot.store.previews import ShownPreviews

log = logging.getLogger(__name__)

J = JobStatus
RUNNING = frozenset({J.QUEUED, J.SUBMITTED, J.RUNNING})
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Smaller and smaller fits after Discord's 413s before giving up.
SHRINKS = 4
# Tries of a status edit that met a passing fault (a dropped connection, a 5xx).
STATUS_TRIES = 4
LOG_LINE_WAIT = 3.0  # seconds a stop waits for log lines on their way


class DiscordPublisher:
    def __init__(
        self,
        bot: discord.Client,
        ledger: Ledger,
        guilds: GuildStore,
        *,
        images: ImagePool,
        token_margin: timedelta = timedelta(seconds=60),
        edit_interval: float = 5.0,
        preview_interval: float = 1.0,
        max_pixels: int = 40_000_000,
        clock: Callable[[], datetime] = utcnow,
        jobs: JobStore | None = None,
        shown: ShownPreviews | None = None,
    ) -> None:
        self.bot = bot
        self.ledger = ledger
        self.guilds = guilds
        # Fitting shares the bot's one image pool with attachment intake.
        self.images = images
        # A preview larger than this is not decoded (the lane's own cap on results).
        self.max_pixels = max_pixels
        self.token_margin = token_margin
        # Where a job's messages go: a follow-up, the channel, a reply, a DM.
        self.routes = ResultRoutes(bot, clock, token_margin, jobs)
        self.log_lines = LogLines(bot, guilds, self.routes)
        self.edit_interval = edit_interval
        self.clock = clock
        self.message_bytes = MESSAGE_BYTES
        self._last_edit: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._delayed: set[asyncio.Task[None]] = set()  # _pending's, running ones too
        self._latest: dict[str, StatusUpdate] = {}
        # One edit at a time per job, so a delayed edit never lands after the final one.
        self._locks: dict[str, asyncio.Lock] = {}
        # Status edits in a row that met a passing fault, per job.
        self._faults: dict[str, int] = {}
        # Endings shown nowhere, shown again when the bot's access may be back (unshown.py).
        self.unshown = UnshownEndings(bot, self._show_again)
        # Log lines on their way: a slow log channel must not hold up a job's end.
        self._log_lines: set[asyncio.Task[None]] = set()
        self.previews = Previews(self._show_preview, interval=preview_interval, store=shown)
        # The tools the lane runs (Upscale, Remove background): their buttons go on results.
        self.tools: frozenset[Tool] = frozenset()
        # Whether the lane streams previews onto status messages (set by the bot).
        self.streams_previews = False

    async def close(self) -> None:
        """Stop delayed status edits (their database closes); log lines get a moment first."""
        if self._log_lines:
            await asyncio.wait(self._log_lines, timeout=LOG_LINE_WAIT)
        pending = [*self._delayed, *self._log_lines]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._pending.clear()
        self._log_lines.clear()
        await self.previews.aclose()
        await self.routes.close()

    # -- status message ---------------------------------------------------------------------
    async def first_status(
        self, job: JobRecord, notes: Sequence[str] = ()
    ) -> tuple[discord.Embed, discord.ui.View]:
        """The status message of a job just admitted, as the member first sees it."""
        balance = await self.ledger.available_now(job.guild_id, job.member_id)
        embed = status_embed(job, balance=balance, notes=notes)
        view = status_view(job.id, active=not job.final, appealable=job.status is J.HELD)
        return embed, view or discord.ui.View()

    async def on_status(self, update: StatusUpdate) -> None:
        job = update.job
        if update.finished:
            # In the background: a rate-limited or failing log channel (discord.py waits out
            # its 429s and retries its 5xx) would otherwise delay the member's final status
            # and keep a delivery turn from every other job.
            task = asyncio.create_task(self.log_lines.post(job))
            self._log_lines.add(task)
            task.add_done_callback(self._log_lines.discard)
        if job.status_message_id is None:
            self.routes.sent_privately.pop(job.id, None)  # no status message to say it on
            if job.final and job.status is not J.DONE and not update.told_privately:
                # Its status message was never shown (Discord refused the post): this ending
                # would be read nowhere, so it is told privately (a kept-back notice was).
                embed = status_embed(job, update.message)
                await tell_privately(self.bot, self.routes, job, embed)
            return
        if job.status not in RUNNING:
            self.previews.close(job.id)  # no preview after this
        self._latest[job.id] = update
        loop = asyncio.get_running_loop()
        wait = self._last_edit.get(job.id, 0.0) + self.edit_interval - loop.time()
        if job.final:
            pending = self._pending.pop(job.id, None)
            if pending is not None:
                pending.cancel()
            await self._edit_status(job.id)
        elif job.id not in self._pending:
            # In the background, at once or once the interval has passed (one trailing edit
            # with the newest state): Discord slow to answer an edit (aiohttp gives up after
            # 5 minutes) must not hold the job itself up, its submission and its result.
            self._schedule(job.id, max(0.0, wait))

    async def _later(self, job_id: str, wait: float) -> None:
        await asyncio.sleep(wait)
        self._pending.pop(job_id, None)
        try:
            await self._edit_status(job_id)
        except Exception:  # a bug: logged here, as the engine does for the edits it awaits
            log.exception("job %s: status update failed", job_id)

    async def _edit_status(self, job_id: str) -> None:
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            await self._edit_status_locked(job_id)
        if job_id not in self._latest and job_id not in self._pending:
            self._locks.pop(job_id, None)

    async def _edit_status_locked(self, job_id: str) -> None:
        update = self._latest.pop(job_id, None)
        if update is None:
            return
        job = update.job
        self._last_edit[job.id] = asyncio.get_running_loop().time()
        if job.final:
            self._last_edit.pop(job.id, None)
        balance = await self.ledger.available_now(job.guild_id, job.member_id)
        hold = await self.ledger.hold(job.id) if job.charged is not None else None
        refunded, covered = (hold.refunded, hold.loss) if hold is not None else (0, 0)
        privately = job.dm_reason or self.routes.sent_privately.get(job.id)  # recorded: jobs
        privately = privately if job.status is J.DONE else None
        embed = status_embed(
            job,
            update.message,
            balance=balance,
            refunded=refunded,
            covered=covered,
            privately=privately,
        )
        active = not job.final and job.status is not J.DELIVERING
        view = status_view(job.id, active=active, appealable=job.status in (J.HELD, J.BLOCKED))
        files: list[discord.File] | None = None
        preview = self.previews.on_message(job.id)
        if preview is not None and job.status in RUNNING:
            embed.set_image(url=f"attachment://{preview}")  # the preview stays in place
        elif preview is not None or self.streams_previews:
            # The result is posted below: the preview comes off. Also one this process never
            # saw: shown before a restart, it may be of an image the service then refused.
            files = []
        again = False  # the edit is made again later: what it must take off is kept
        try:
            await self.routes.edit(
                job, job.status_message_id, embed, view, files, status_content(job)
            )
        except (discord.DiscordServerError, *NETWORK_ERRORS) as exc:
            # A passing fault: left as it is, the message would say "rendering" (with its
            # preview and Cancel) for good, so the newest state is shown again a few times.
            tries = self._faults[job.id] = self._faults.get(job.id, 0) + 1
            what = getattr(exc, "status", None) or type(exc).__name__
            log.warning("job %s: status message not updated (%s, try %d)", job.id, what, tries)
            if tries < STATUS_TRIES:
                wait = min(60.0, self.edit_interval * 2**tries) * random.uniform(0.5, 1.0)
                again = self._again(update, wait)
        except discord.HTTPException as exc:
            log.info("job %s: status message not updated (%s)", job.id, exc.status)
            # A result is posted on its own, a kept-back one's notice is sent privately.
            told = job.status is J.DONE or update.told_privately
            if exc.status != 429 and job.final and not told:
                # Refused for good: deleted (404), out of the bot's reach (403), or in a
                # thread archived or locked meanwhile (400, 50083). It was the only place this
                # ending would be read: tell the member privately.
                told = await tell_privately(self.bot, self.routes, job, embed)
            if exc.status == 403 and job.final and not told:
                self.unshown.keep(update)  # the bot may be let back in
            if files is not None and exc.status != 429:
                await self.previews.given_up(job.id, exc.status)
        except discord.RateLimited as exc:
            # Not slept out under the job's lock: the newest state is shown once it may be.
            log.info("job %s: status edit rate limited for %.0fs", job.id, exc.retry_after)
            again = self._again(update, exc.retry_after)
        else:
            self._faults.pop(job.id, None)
            if files is not None:
                await self.previews.taken_off(job.id)
        if job.final and not again:
            # Not before the retried edit: it must still know a preview is on the message.
            self.previews.forget(job.id)
            self.routes.sent_privately.pop(job.id, None)
            self._faults.pop(job.id, None)

    def _again(self, update: StatusUpdate, wait: float) -> bool:
        """Show the newest state in `wait` seconds (a newer one may come meanwhile)."""
        job_id = update.job.id
        self._latest.setdefault(job_id, update)
        if job_id not in self._pending:
            self._schedule(job_id, wait)
        return True

    def _schedule(self, job_id: str, wait: float) -> None:
        # Kept until done: close() stops one under way too (it reads the closing database).
        task = self._pending[job_id] = asyncio.create_task(self._later(job_id, wait))
        self._delayed.add(task)
        task.add_done_callback(self._delayed.discard)

    async def _show_again(self, update: StatusUpdate) -> None:
        self._latest.setdefault(update.job.id, update)
        await self._edit_status(update.job.id)

    async def previews_left(self, jobs: JobStore) -> None:
        """At the start, previews a stopped process left on status messages: a job still under
        way has its taken off by its next status edit, an ended one's now (in the background,
        shown again as it ended; it was told already, so never privately again)."""
        try:
            left = await self.previews.load()
            for job_id in left:
                job = await jobs.job(job_id)
                if job is None or job.status_message_id is None:
                    await self.previews.given_up(job_id, "no status message")
                elif job.status not in RUNNING and job.status is not J.DELIVERING:
                    update = StatusUpdate(job, job.error, told_privately=True)
                    self._latest.setdefault(job_id, update)
                    self._schedule(job_id, 0.0)
        except (StoreBusy, sqlite3.OperationalError) as exc:  # left on for now; next start
            log.warning("previews left by the last run not looked at (%s)", exc)

    # -- results ----------------------------------------------------------------------------
    async def on_preview(self, job: JobRecord, image: bytes, mime: str) -> None:
        """A partial image (lanes that stream them): shown on the status message, in place."""
        if job.status_message_id is not None:
            self.previews.offer(job, image, mime)

    async def _show_preview(self, job: JobRecord, image: bytes, mime: str) -> None:
        if not self.previews.is_open(job.id):
            return
        # Fitted before it is uploaded (a 4K PNG partial would be refused over the upload
        # limit on every edit), and decoded whole: one that does not decode is not shown.
        limit = job.upload_limit or await self._guild_upload_limit(job.guild_id)
        try:
            fitted = await self.images.run(fit_preview, image, limit, self.max_pixels)
        except ValueError as exc:
            log.info("job %s: preview skipped (%s)", job.id, exc)
            return
        del image
        lock = self._locks.setdefault(job.id, asyncio.Lock())
        async with lock:
            if not self.previews.is_open(job.id):
                return  # the job moved on while this waited
            name = preview_name(job.id, fitted.mime)
            balance = await self.ledger.available_now(job.guild_id, job.member_id)
            embed = status_embed(job, balance=balance)
            embed.set_image(url=f"attachment://{name}")
            view = status_view(job.id, active=True, appealable=False)
            file = MemoryFile(fitted.data, name)
            await self.previews.record(job.id, name)  # before: the process may die meanwhile
            try:
                await self.routes.edit(job, job.status_message_id, embed, view, [file])
            except (discord.DiscordServerError, *NETWORK_ERRORS) as exc:
                # Its answer was lost, not the edit perhaps: counted as shown, so the status
                # edits that follow take it off (taking off one that is not there is harmless).
                what = getattr(exc, "status", None) or type(exc).__name__
                log.warning("job %s: preview may not be shown (%s)", job.id, what)
            except discord.HTTPException as exc:
                log.info("job %s: preview not shown (%s)", job.id, exc.status)
                return
            except discord.RateLimited:
                return  # a later preview, or the result, shows instead
            self.previews.shown(job.id, name)

    async def find_delivery(self, job: JobRecord) -> list[int] | None:
        """The ids of the messages that carry this job's result (earlier_posts.py)."""
        return await earlier_delivery(self.bot, self.routes, job)

    async def find_status(self, job: JobRecord) -> int | None:
        """The job's status message, posted by a process that died before recording it."""
        return await earlier_status(self.bot, self.routes, job)

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        """Post the result; Discord's expected faults become PostFailed. A 413 means Discord's
        real limit is below the one it told us: what was posted is removed and the images are
        fitted again under a smaller budget, one message each, instead of resending them."""
        if job.output is not None:  # a prompt enhancement: the member's choice, privately
            followup = self.routes.followup(job) if self.routes.token_alive(job) else None
            return await post_choice(self.bot, job, followup)
        with server_errors.watching() as answered_5xx:
            try:
                posted = await self._deliver(job, images, private=False)
            except SourceGone:
                # The image it answers was taken down while it ran: a public reply would show
                # it again. The member paid for it, so it goes to them alone, saying why.
                log.info("job %s: its source image was deleted; sending the result by DM", job.id)
                posted = await self._deliver(job, images, private=True)
        if not answered_5xx:
            return posted
        # discord.py may have sent a post again after a 5xx and Discord made both: the copies
        # go, what was just posted stays (it is whole; a look may not see all of it yet).
        try:
            return await earlier_delivery(self.bot, self.routes, job, keep=posted) or posted
        except PostFailed:  # cannot look now: what was posted is still the result
            return posted

    async def _deliver(
        self, job: JobRecord, images: list[ResultImage], *, private: bool
    ) -> list[int]:
        limit = job.upload_limit or await self._guild_upload_limit(job.guild_id)
        message_bytes = self.message_bytes
        hold = await self.ledger.hold(job.id)
        covered = hold.loss if hold is not None else 0
        for _ in range(SHRINKS):
            fitted = await fit_all(self.images, images, limit)
            parts = split(fitted, limit, message_bytes)
            posted: list[discord.Message | int] = []
            try:
                for number, chunk in enumerate(parts, start=1):
                    part = (number, len(parts))
                    posted.append(await self._post(job, chunk, part, covered, private))
            except SourceGone:
                await self._remove(job, posted)  # no part of it stays in the channel
                raise
            except TooLarge as refused:
                await self._remove(job, posted)
                limit, message_bytes = min(limit, refused.largest) * 2 // 3, 0
                log.warning(
                    "job %s: Discord refused the upload as too large (413); fitting the images "
                    "under %s each and posting them one by one",
                    job.id,
                    f"{limit:,} bytes",
                )
                continue
            return [m if isinstance(m, int) else m.id for m in posted]
        raise PostFailed("Discord refused the images as too large at every size", retry=False)

    async def _remove(self, job: JobRecord, posted: list[discord.Message | int]) -> None:
        for message in posted:
            if isinstance(message, discord.Message):
                with contextlib.suppress(discord.HTTPException, discord.RateLimited):
                    await message.delete()

    async def _post(
        self,
        job: JobRecord,
        chunk: list[tuple[int, FittedImage]],
        part: tuple[int, int],
        covered: int,
        private: bool = False,
    ) -> discord.Message:
        """One message of the result: a follow-up while the token lives, else in the channel
        mentioning the member, else by DM."""

        def files() -> list[discord.File]:  # a File is consumed by sending it: fresh ones each try
            return [MemoryFile(f.data, f"{job.id}-{n + 1}.{f.extension}") for n, f in chunk]

        largest = max(len(f.data) for _, f in chunk)
        first_n, first = chunk[0]
        embed = result_embed(
            job, [f for _, f in chunk], f"{job.id}-{first_n + 1}.{first.extension}", part, covered
        )
        return await self.routes.post(job, embed, files, largest, self.tools, private=private)

    # -- helpers ----------------------------------------------------------------------------
    async def _guild_upload_limit(self, guild_id: int) -> int:
        guild = self.bot.get_guild(guild_id)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
