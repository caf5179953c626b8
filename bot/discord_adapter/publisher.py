"""Delivery to Discord: the member's status message, the result post, and their buttons.

This is the engine's Publisher. It edits a job's status message as the job moves (at most once
every few seconds, endings at once), posts the finished images — as an interaction follow-up
while the 15-minute token lives, else as a channel message that mentions the member, else by DM
— each fitted to the upload limit, and can tell from the channel whether a job's result was
already posted (its embed footer carries the job id), which makes delivery exactly-once across
restarts. Its buttons are the persistent ones (buttons/), so a click works after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import aiohttp
import discord

from bot.discord_adapter.buttons.base import view_of
from bot.discord_adapter.buttons.job import AppealButton, CancelButton
from bot.discord_adapter.buttons.result import result_view
from bot.discord_adapter.embeds import (
    RESULT_FOOTER,
    link,
    operation_word,
    result_embed,
    status_embed,
)
from bot.engine.publisher import PostFailed, ResultImage, StatusUpdate
from bot.media.fit import FittedImage, fit_for_upload
from bot.media.pool import ImagePool
from bot.store.db import utcnow
from bot.store.guilds import GuildStore
from bot.store.jobs import JobRecord, JobStatus
from bot.store.ledger import Ledger

log = logging.getLogger(__name__)

J = JobStatus
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_FILES = 10
# Discord caps a whole request as well as each file: a result larger than this is split.
MESSAGE_BYTES = 25 * 1024 * 1024
# Failures to reach Discord at all (not an answer from it).
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
# Smaller and smaller fits after Discord's 413s before giving up.
SHRINKS = 4


def status_view(job_id: str, *, active: bool, appealable: bool) -> discord.ui.View | None:
    """Cancel while the job can still stop; Appeal when it was held or blocked."""
    buttons: list[discord.ui.Item[discord.ui.View]] = []
    if active:
        buttons.append(CancelButton(job_id))
    if appealable:
        buttons.append(AppealButton(job_id))
    return view_of(*buttons)


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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.bot = bot
        self.ledger = ledger
        self.guilds = guilds
        # Fitting shares the bot's one image pool with attachment intake.
        self.images = images
        self.token_margin = token_margin
        self.edit_interval = edit_interval
        self.clock = clock
        self.message_bytes = MESSAGE_BYTES
        self._last_edit: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, StatusUpdate] = {}
        # One edit at a time per job, so a delayed edit never lands after the final one.
        self._locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        """Drop the delayed status edits (the database they read is closing)."""
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._pending.clear()

    # -- status message ---------------------------------------------------------------------
    async def first_status(
        self, job: JobRecord, notes: Sequence[str] = ()
    ) -> tuple[discord.Embed, discord.ui.View | None]:
        """The status message of a job just admitted, as the member first sees it."""
        balance = await self.ledger.available_now(job.guild_id, job.member_id)
        embed = status_embed(job, balance=balance, notes=notes)
        view = status_view(job.id, active=not job.final, appealable=job.status is J.HELD)
        return embed, view

    async def on_status(self, update: StatusUpdate) -> None:
        job = update.job
        if update.finished:
            await self._log_line(job)
        if job.status_message_id is None:
            return
        self._latest[job.id] = update
        loop = asyncio.get_running_loop()
        wait = self._last_edit.get(job.id, 0.0) + self.edit_interval - loop.time()
        if job.final or wait <= 0:
            pending = self._pending.pop(job.id, None)
            if pending is not None:
                pending.cancel()
            await self._edit_status(job.id)
        elif job.id not in self._pending:
            # Coalesce: one trailing edit with the newest state once the interval has passed.
            self._pending[job.id] = asyncio.create_task(self._later(job.id, wait))

    async def _later(self, job_id: str, wait: float) -> None:
        await asyncio.sleep(wait)
        self._pending.pop(job_id, None)
        await self._edit_status(job_id)

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
        hold = await self.ledger.hold_of(job.id) if job.final else None
        refunded = int(hold["refunded"]) if hold is not None else 0
        embed = status_embed(job, update.message, balance=balance, refunded=refunded)
        active = not job.final and job.status is not J.DELIVERING
        view = status_view(job.id, active=active, appealable=job.status in (J.HELD, J.BLOCKED))
        try:
            await self._edit_message(job, job.status_message_id, embed, view)
        except discord.HTTPException as exc:
            log.info("job %s: status message not updated (%s)", job.id, exc.status)
        except NETWORK_ERRORS as exc:
            log.warning("job %s: status message not updated (%s)", job.id, type(exc).__name__)

    async def _edit_message(
        self,
        job: JobRecord,
        message_id: int | None,
        embed: discord.Embed,
        view: discord.ui.View | None,
    ) -> None:
        assert message_id is not None
        kwargs: dict = {"embed": embed, "view": view}
        if self._token_alive(job, timedelta(seconds=5)):
            message = await self._webhook(job).edit_message(message_id, **kwargs)
        else:
            channel = await self._channel(job.channel_id)
            message = await channel.get_partial_message(message_id).edit(**kwargs)
        if view is not None:
            view.stop()  # the cogs' DynamicItems answer the clicks, not this view
        del message

    async def _log_line(self, job: JobRecord) -> None:
        """One line per finished job in the guild's log channel, if it has one."""
        settings = await self.guilds.get(job.guild_id)
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
            channel = await self._channel(settings.log_channel_id)
            await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.info("job %s: log line not posted (%s)", job.id, exc.status)

    # -- results ----------------------------------------------------------------------------
    async def find_delivery(self, job: JobRecord) -> list[int] | None:
        """The ids of the messages that carry this job's result, if ALL its parts were posted
        (newest first in the channel, then the member's DMs). A partial post is removed, so the
        engine posts the whole result again."""
        if self.bot.user is None:
            return None
        since = job.created_at - timedelta(seconds=5)
        after = discord.Object(id=discord.utils.time_snowflake(since))
        found: dict[int, tuple[int, int]] = {}
        messages: dict[int, discord.Message] = {}
        try:
            channel = await self._channel(job.channel_id)
            async for message in channel.history(limit=200, after=after, oldest_first=False):
                self._collect(message, job.id, found, messages)
        except (discord.Forbidden, discord.NotFound):
            log.warning("job %s: cannot read the channel to check for an earlier post", job.id)
        except discord.HTTPException as exc:
            raise PostFailed(f"Discord answered {exc.status}", retry=True) from None
        except NETWORK_ERRORS as exc:
            raise PostFailed(f"cannot reach Discord ({type(exc).__name__})", retry=True) from None
        if not found:
            with contextlib.suppress(discord.HTTPException):
                user = await self.bot.fetch_user(job.member_id)
                dm = user.dm_channel or await user.create_dm()
                async for message in dm.history(limit=50, after=after, oldest_first=False):
                    self._collect(message, job.id, found, messages)
        if not found:
            return None
        total = max(n for _, n in found.values())
        if len({part for part, _ in found.values()}) == total:
            return [mid for mid, _ in sorted(found.items(), key=lambda kv: kv[1][0])]
        for message in messages.values():  # half a result: take it down, post it whole again
            with contextlib.suppress(discord.HTTPException):
                await message.delete()
        return None

    def _collect(
        self,
        message: discord.Message,
        job_id: str,
        found: dict[int, tuple[int, int]],
        messages: dict[int, discord.Message],
    ) -> None:
        if self.bot.user is None or message.author.id != self.bot.user.id:
            return
        for embed in message.embeds:
            match = RESULT_FOOTER.match(embed.footer.text or "")
            if match and match["job"] == job_id:
                found[message.id] = (int(match["part"] or 1), int(match["of"] or 1))
                messages[message.id] = message

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        """Post the result; Discord's expected faults become PostFailed. A 413 means Discord's
        real limit is below the one it told us: what was posted is removed and the images are
        fitted again under a smaller budget, one message each, instead of resending them."""
        limit = job.upload_limit or await self._guild_upload_limit(job.guild_id)
        message_bytes = self.message_bytes
        for _ in range(SHRINKS):
            fitted = await _fit_all(self.images, images, limit)
            parts = _split(fitted, limit, message_bytes)
            posted: list[discord.Message | int] = []
            try:
                for number, chunk in enumerate(parts, start=1):
                    posted.append(await self._post(job, chunk, (number, len(parts))))
            except _TooLarge as refused:
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
                with contextlib.suppress(discord.HTTPException):
                    await message.delete()

    async def _post(
        self, job: JobRecord, chunk: list[tuple[int, FittedImage]], part: tuple[int, int]
    ) -> discord.Message:
        """One message of the result: a follow-up while the token lives, else in the channel
        mentioning the member, else by DM."""

        def files() -> list[discord.File]:  # a File is consumed by sending it: fresh ones each try
            return [
                discord.File(io.BytesIO(f.data), filename=f"{job.id}-{n + 1}.{f.extension}")
                for n, f in chunk
            ]

        largest = max(len(f.data) for _, f in chunk)
        first_n, first = chunk[0]
        embed = result_embed(
            job, [f for _, f in chunk], f"{job.id}-{first_n + 1}.{first.extension}", part
        )
        if self._token_alive(job, self.token_margin):
            view = result_view(job.id)
            try:
                return await _sending(
                    self._webhook(job).send(embed=embed, files=files(), view=view, wait=True),
                    largest,
                )
            except PostFailed:
                raise
            except discord.HTTPException as exc:
                log.warning(
                    "job %s: follow-up refused (%s); posting in the channel", job.id, exc.status
                )
            finally:
                view.stop()
        mention = discord.AllowedMentions(
            users=[discord.Object(job.member_id)], everyone=False, roles=False
        )
        try:
            channel = await self._channel(job.channel_id)
            view = result_view(job.id)
            try:
                return await _sending(
                    channel.send(
                        content=f"<@{job.member_id}> your images are ready.",
                        embed=embed,
                        files=files(),
                        view=view,
                        allowed_mentions=mention,
                    ),
                    largest,
                )
            finally:
                view.stop()
        except (discord.Forbidden, discord.NotFound) as exc:
            log.warning(
                "job %s: cannot post in channel %s (%s); sending the result by DM",
                job.id,
                job.channel_id,
                exc.status,
            )
        # No buttons in a DM: they act on the job in its server and would only answer
        # "I cannot find that job here" (the channel copy, when it exists, has them).
        try:
            user = await self.bot.fetch_user(job.member_id)
            return await _sending(
                user.send(
                    content=f"I could not post in <#{job.channel_id}>, so here are your images.",
                    embed=embed,
                    files=files(),
                ),
                largest,
            )
        except (discord.Forbidden, discord.NotFound) as exc:
            raise PostFailed(
                f"nowhere to post: not in the channel, and the member's DMs are closed "
                f"({exc.status})",
                retry=False,
            ) from None

    # -- helpers ----------------------------------------------------------------------------
    def _token_alive(self, job: JobRecord, margin: timedelta) -> bool:
        expires = job.interaction_expires_at
        return (
            bool(job.interaction_token) and expires is not None and self.clock() < expires - margin
        )

    def _webhook(self, job: JobRecord) -> discord.Webhook:
        assert job.interaction_token is not None and self.bot.application_id is not None
        return discord.Webhook.partial(
            self.bot.application_id, job.interaction_token, client=self.bot
        )

    async def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        assert isinstance(channel, discord.abc.Messageable)
        return channel

    async def _guild_upload_limit(self, guild_id: int) -> int:
        guild = self.bot.get_guild(guild_id)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


class _TooLarge(Exception):
    """Discord answered 413: the files (the largest `largest` bytes) are over its real limit."""

    def __init__(self, largest: int) -> None:
        super().__init__(f"413 for a file of {largest:,} bytes")
        self.largest = largest


async def _sending(call: Awaitable[discord.Message | None], largest: int) -> discord.Message:
    """Await one post; Discord's expected faults become PostFailed (retry later) or _TooLarge,
    refusals (403/404, expired tokens) stay HTTPExceptions for the caller's fallbacks."""
    try:
        message = await call
    except discord.HTTPException as exc:
        if exc.status == 413:
            raise _TooLarge(largest) from None
        if exc.status == 429 or exc.status >= 500:
            raise PostFailed(f"Discord answered {exc.status}", retry=True) from None
        raise
    except NETWORK_ERRORS as exc:
        raise PostFailed(f"cannot reach Discord ({type(exc).__name__})", retry=True) from None
    assert message is not None  # wait=True
    return message


async def _fit_all(pool: ImagePool, images: list[ResultImage], limit: int) -> list[FittedImage]:
    # One pool call per image: another job's images (or an edit's sources) can go in between.
    fitted = []
    for image in images:
        try:
            fitted.append(await pool.run(fit_for_upload, image.data, limit))
        except ValueError as exc:
            # Never post a result with an image silently left out.
            raise PostFailed(
                f"image {image.index + 1} cannot be fitted under {limit:,} bytes", retry=False
            ) from exc
    return fitted


def _split(
    fitted: list[FittedImage], limit: int, message_bytes: int
) -> list[list[tuple[int, FittedImage]]]:
    """Images into messages: at most 10 files and `message_bytes` (or one file) per message."""
    cap = max(limit, message_bytes)
    parts: list[list[tuple[int, FittedImage]]] = []
    current: list[tuple[int, FittedImage]] = []
    size = 0
    for n, image in enumerate(fitted):
        if current and (len(current) == MAX_FILES or size + len(image.data) > cap):
            parts.append(current)
            current, size = [], 0
        current.append((n, image))
        size += len(image.data)
    parts.append(current)
    return parts
