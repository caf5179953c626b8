"""The moderators' review board in Discord: one message per review item in the guild's
moderation channel, edited as moderators act, with the job's source images attached (what
it shows: review_card.py).

When no moderation channel can take an item (none set, or no permission to post there), the
item stays reachable through /mod queue and the guild's owner is told once how to fix it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from typing import TYPE_CHECKING

import discord

from bot.discord_adapter.access import age_restricted
from bot.discord_adapter.card_turns import CARD_EDIT_WAIT, CardTurns
from bot.discord_adapter.embeds import charge_words
from bot.discord_adapter.owner_notices import Told, tell_owner
from bot.discord_adapter.review_card import (
    add_hidden_sources,
    item_embed,
    review_view,
    source_files,
    sources_shown,
)
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.store.db import StoreBusy
from bot.store.jobs import JobRecord
from bot.store.moderation import ReviewItem

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

# Posting again after a passing fault: this many tries, waits growing to the cap (seconds).
RETRY_ATTEMPTS = 8
RETRY_CAP = 300.0
# Events kept in the audit that are not decisions to list on the item.
UNLISTED = {"appeal", "released"}


class ReviewBoard:
    """Posts and refreshes review items; the engine's ReviewListener."""

    def __init__(self, bot: discord.Client, services: Services, *, retry_base: float = 5.0) -> None:
        self.bot = bot
        self.services = services
        # First wait (seconds) before posting again after a passing fault; doubles each time.
        self.retry_base = retry_base
        self._retries: dict[int, asyncio.Task[None]] = {}
        self._unposted: set[int] = set()
        # Items whose post lost its answer (or met a 5xx): Discord may have made the message.
        self._unanswered: set[int] = set()
        # Items this process has posted (or tried to). One it has not, with no message on
        # record, may have been posted by a process that died before recording it.
        self._tried: set[int] = set()
        self._posting: set[int] = set()
        self._turns = CardTurns()

    async def on_review_item(self, item: ReviewItem, job: JobRecord) -> None:
        self._tried.add(item.id)  # just made: no earlier process can have posted it
        await self.post(item, job)

    async def on_review_changed(self, item_id: int) -> None:
        await self.refresh(item_id)

    async def render(
        self, item: ReviewItem, job: JobRecord, channel: object | None = None
    ) -> tuple[discord.Embed, discord.ui.View]:
        """The item's embed and buttons; in `channel` (when known), the note on source
        images it may not show."""
        settings = await self.services.guilds.settings(item.guild_id)
        events = await self.services.moderation.item_events(item.id)
        events = [e for e in events if e.action not in UNLISTED]
        release_channel = (await self.services.safety.settings(item.guild_id)).release_channel_id
        strikes = await self.services.moderation.strike_count(
            item.guild_id, job.member_id, settings.strike_window_days
        )
        hold = await self.services.ledger.hold(job.id)
        refundable, money = 0, f"{job.estimate:,} Buzz estimated"
        if hold is not None:
            if not hold.settled:
                money = f"{hold.amount:,} Buzz held (nothing charged yet)"
            else:
                refundable = hold.refundable
                money = charge_words(hold.charged, hold.refunded)
        embed = item_embed(
            item,
            job,
            events,
            strikes=strikes,
            window_days=settings.strike_window_days,
            money=money,
            release_channel=release_channel,
        )
        hidden = channel is not None and not sources_shown(job, age_restricted(channel))
        if hidden and (count := len(await self.services.jobs.sources(job.id))):
            add_hidden_sources(embed, count)
        return embed, review_view(item, events, refundable, release_channel)

    async def post(self, item: ReviewItem, job: JobRecord) -> bool:
        """Post the item in the moderation channel; False (and the owner told once) if we can't.
        A passing fault (the network, Discord's 429/5xx) is tried again later."""
        # A pass over unposted items (a retry, the server back from an outage) may meet an item
        # whose post is under way, or read it before that post was recorded: one card each.
        if item.id in self._posting:
            return False
        self._posting.add(item.id)
        try:
            latest = await self.services.moderation.item(item.id)
            if latest is not None and latest.message_id is not None:
                settings = await self.services.guilds.settings(item.guild_id)
                if latest.message_channel_id == settings.mod_channel_id:
                    return True
            return await self._post(item, job)
        finally:
            self._posting.discard(item.id)

    async def _post(self, item: ReviewItem, job: JobRecord) -> bool:
        if self.bot.get_guild(item.guild_id) is None:
            # Removed from the server: nobody there to fix a channel or read the item. It
            # stays in the queue and is posted when the bot is added back (on_guild_join).
            log.info("review #%d not posted: the bot is not in server %s", item.id, item.guild_id)
            return False
        settings = await self.services.guilds.settings(item.guild_id)
        if not settings.mod_channel_id:
            await self._warn_owner(item.guild_id, "unset", "no moderation channel is set")
            return False
        try:
            found = await self._earlier_copy(item, settings.mod_channel_id)
            message = found or await self._send(item, job, settings.mod_channel_id)
        except (discord.Forbidden, discord.NotFound) as exc:
            await self._warn_owner(
                item.guild_id,
                _problem(exc, settings.mod_channel_id),
                f"I cannot post in <#{settings.mod_channel_id}> ({exc.status})",
            )
            return False
        except discord.HTTPException as exc:
            log.warning("review #%d not posted (%s); it stays in /mod queue", item.id, exc.status)
            if exc.status >= 500:
                self._unanswered.add(item.id)
            if exc.status == 429 or exc.status >= 500:
                self._retry_later(item.guild_id)
            return False
        except NETWORK_ERRORS as exc:
            log.warning(
                "review #%d not posted (%s); trying again later", item.id, type(exc).__name__
            )
            self._unanswered.add(item.id)
            self._retry_later(item.guild_id)
            return False
        except discord.RateLimited as exc:  # a long 429 (ratelimits.py): not slept out
            log.warning(
                "review #%d not posted (rate limited for %.0fs); trying again later",
                item.id,
                exc.retry_after,
            )
            self._retry_later(item.guild_id)
            return False
        if message is None:
            return False
        try:
            if settings.mod_channel_warning is not None:  # fixed: told again if it comes back
                await self.services.guilds.mod_channel_works(item.guild_id)
            await self.services.moderation.set_item_message(item.id, message.channel.id, message.id)
        except StoreBusy as exc:  # posted, not recorded: found by its footer on the next try
            log.warning("review #%d posted, not recorded (%s); trying again later", item.id, exc)
            self._unanswered.add(item.id)
            self._retry_later(item.guild_id)
            return False
        # Changed while it was on its way (an appeal, a decision from /mod queue): their
        # refresh found no message to edit then, so the message shows them now.
        latest = await self.services.moderation.item(item.id)
        if found is not None or (latest is not None and _shown(latest) != _shown(item)):
            await self.refresh(item.id)
        return True

    async def _earlier_copy(self, item: ReviewItem, channel_id: int) -> discord.Message | None:
        """The item's message from a post whose answer was lost, found by its footer: posting
        it again would leave that one in the channel, never updated. Also one an earlier
        process posted just before it stopped (or died), before recording it."""
        earlier_process = item.id not in self._tried
        self._tried.add(item.id)
        if not (earlier_process or item.id in self._unanswered) or self.bot.user is None:
            return None
        channel = await self._channel(channel_id)
        if channel is None:
            return None
        mark = f"review #{item.id} · "
        try:
            async for message in channel.history(limit=100):
                if message.author.id == self.bot.user.id and any(
                    (e.footer.text or "").startswith(mark) for e in message.embeds
                ):
                    self._unanswered.discard(item.id)
                    return message
        except (discord.Forbidden, discord.NotFound):  # cannot read it: posted again
            pass
        self._unanswered.discard(item.id)
        return None

    async def _send(
        self, item: ReviewItem, job: JobRecord, channel_id: int
    ) -> discord.Message | None:
        """The item's message in the channel (None: not a text channel, the owner told)."""
        channel = await self._channel(channel_id)
        if channel is None:
            await self._warn_owner(
                item.guild_id, f"kind:{channel_id}", f"<#{channel_id}> is not a text channel"
            )
            return None
        embed, view = await self.render(item, job, channel)
        sources = await self.services.jobs.sources(job.id)
        files = source_files(sources) if sources_shown(job, age_restricted(channel)) else []
        try:
            return await channel.send(embed=embed, view=view, files=files)
        except discord.HTTPException as exc:
            if exc.status != 413 or not files:
                raise
            # Too big to attach: the item without its images beats no item at all.
            embed.add_field(name="Sources", value="too large to attach here", inline=False)
            return await channel.send(embed=embed, view=view)
        finally:
            view.stop()

    def _retry_later(self, guild_id: int) -> None:
        """Post the guild's unposted items again after a passing fault (one task per guild)."""
        self._unposted.add(guild_id)
        task = self._retries.get(guild_id)
        if task is None or task.done():
            self._retries[guild_id] = asyncio.create_task(
                self._retry(guild_id), name=f"review-retry-{guild_id}"
            )

    async def _retry(self, guild_id: int) -> None:
        for attempt in range(RETRY_ATTEMPTS):
            ceiling = min(RETRY_CAP, self.retry_base * 2**attempt)
            await asyncio.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))
            self._unposted.discard(guild_id)
            try:
                await self.post_pending(guild_id)
            except Exception:  # a bug: the items stay in /mod queue, posted at the next start
                log.exception("guild %s: review items not posted", guild_id)
                return
            if guild_id not in self._unposted:
                return
        log.warning(
            "guild %s: review items still not posted after %d tries; they stay in /mod queue "
            "and are posted at the next start",
            guild_id,
            RETRY_ATTEMPTS,
        )

    def close(self) -> None:
        for task in self._retries.values():
            task.cancel()

    async def _channel(self, channel_id: int) -> discord.abc.Messageable | None:
        """From the cache, else from Discord (right after a start the cache may be empty)."""
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def refresh(self, item_id: int) -> None:
        """Show the latest decisions on the item's message (if it has one); a message that is
        gone is posted again while the item is open (its buttons are the only way to decide).
        One redraw at a time per card, each from the database as it is then (card_turns.py)."""
        async with self._turns.turn(item_id):
            gone = await self._redraw(item_id)
        if gone is not None:  # outside the turn: posting again redraws the card itself
            await self._gone(item_id, gone)

    async def refresh_member(self, guild_id: int, member_id: int, *, but: int) -> None:
        """Redraw the member's other open cards: they show the member's strikes."""
        for item in await self.services.moderation.open_items_of_member(guild_id, member_id):
            if item.id != but:
                await self.refresh(item.id)

    async def _redraw(self, item_id: int) -> int | None:
        """Edit the card; the id of its message when Discord says it is gone."""
        item = await self.services.moderation.item(item_id)
        if item is None or item.message_id is None or item.message_channel_id is None:
            return None
        job = await self.services.jobs.job(item.job_id)
        assert job is not None
        # Its channel from the cache, if there (the note on source images it may not show).
        embed, view = await self.render(item, job, self.bot.get_channel(item.message_channel_id))
        # A partial channel needs no cache: right after a fresh login it may still be empty.
        channel = self.bot.get_partial_messageable(item.message_channel_id, guild_id=item.guild_id)
        try:
            async with asyncio.timeout(CARD_EDIT_WAIT):
                await channel.get_partial_message(item.message_id).edit(embed=embed, view=view)
        except discord.NotFound as exc:  # 10008 message or 10003 channel deleted
            log.info("review #%d: its message is gone (%s)", item.id, exc.code)
            return item.message_id
        except discord.Forbidden as exc:  # access taken: only the owner can give it back
            await self._warn_owner(
                item.guild_id,
                _problem(exc, channel.id),
                f"I cannot update review items in <#{channel.id}> ({exc.code})",
            )
        except discord.HTTPException as exc:
            log.warning("review #%d: message not updated (%s)", item.id, exc.status)
        except TimeoutError:  # ours (before NETWORK_ERRORS, which has it too)
            log.warning(
                "review #%d: message not updated (Discord failed it for %.0fs); given up",
                item.id,
                CARD_EDIT_WAIT,
            )
        except NETWORK_ERRORS as exc:
            log.warning("review #%d: message not updated (%s)", item.id, type(exc).__name__)
        except discord.RateLimited:
            log.warning("review #%d: message not updated (rate limited)", item.id)
        else:
            settings = await self.services.guilds.settings(item.guild_id)
            if settings.mod_channel_warning and settings.mod_channel_id == channel.id:
                await self.services.guilds.mod_channel_works(item.guild_id)  # access is back
        finally:
            view.stop()
        return None

    async def on_message_deleted(self, message_id: int) -> None:
        """A message was deleted (MESSAGE_DELETE): if it was an open item's, post it again."""
        item_id = await self.services.moderation.item_id_for_message(message_id)
        if item_id is not None:
            await self._gone(item_id, message_id)

    async def _gone(self, item_id: int, message_id: int) -> None:
        # Forgotten only if still its message: the event and a failed edit both see the same
        # delete, and only one of them may post the copy.
        if not await self.services.moderation.forget_item_message(item_id, message_id):
            return
        item = await self.services.moderation.item(item_id)
        job = await self.services.jobs.job(item.job_id) if item is not None else None
        if item is not None and item.open and job is not None:
            await self.post(item, job)

    async def post_pending(self, guild_id: int, *, moved_to: int | None = None) -> int:
        """Post the guild's open items that have no message yet (after a channel is set); with
        `moved_to` (the new moderation channel), also those whose message is elsewhere: the
        old channel may be gone, and its buttons were the only way to decide them."""
        posted = 0
        found = await self.services.moderation.items_without_message(guild_id, outside=moved_to)
        for item in found:
            job = await self.services.jobs.job(item.job_id)
            if job is not None and await self.post(item, job):
                posted += 1
                if moved_to is not None:
                    await self._retire_copy(item, moved_to)
        return posted

    async def _retire_copy(self, item: ReviewItem, moved_to: int) -> None:
        """The item's message in the old channel: it is no longer the one refreshed, so its
        buttons and state would go stale for good. It now only says where the item went."""
        if item.message_id is None or item.message_channel_id in (None, moved_to):
            return
        channel = self.bot.get_partial_messageable(item.message_channel_id, guild_id=item.guild_id)
        try:
            await channel.get_partial_message(item.message_id).edit(
                content=f"Review #{item.id} moved to <#{moved_to}>: decide it there.",
                embed=None,
                attachments=[],
                view=None,
            )
        except discord.NotFound:  # the old channel or message is gone: nothing left to retire
            pass
        except (discord.HTTPException, discord.RateLimited, *NETWORK_ERRORS) as exc:
            log.info("review #%d: its old copy was not retired (%s)", item.id, exc)

    async def _warn_owner(self, guild_id: int, problem: str, why: str) -> None:
        """Tell the owner `why` once per `problem` (a key: what went wrong, in which channel):
        two items failing alike tell them once; a different problem, or the same one back
        after a fix, is told again."""
        guilds = self.services.guilds
        if self.bot.get_guild(guild_id) is None:
            # The bot is out of the server (removed, or it is in an outage): its 403s are not
            # the channel's problem, and nobody there can be told. Unclaimed, so a real problem
            # once it is back is told.
            log.info("guild %s: not in the server; review items wait (%s)", guild_id, why)
            return
        if not await guilds.claim_mod_channel_warning(guild_id, problem):
            return
        log.warning("guild %s: review items cannot be posted: %s", guild_id, why)
        told = await tell_owner(
            self.bot,
            guild_id,
            f"A job in {{guild}} needs a moderator's review, but {why}. Fix it with "
            "`/settings mod-channel` (and let me send messages and attach files there); "
            "until then moderators can find open items with `/mod queue`.",
        )
        if told is Told.NOT_NOW:  # not told after all: let the next item try again
            await guilds.update(guild_id, mod_channel_warning=None)


def _problem(exc: discord.HTTPException, channel_id: int) -> str:
    """Which problem a refusal is: access taken (403), or the channel gone (404)."""
    return f"{'access' if exc.status == 403 else 'gone'}:{channel_id}"


def _shown(item: ReviewItem) -> ReviewItem:
    """What the item's message shows of it (where that message is aside)."""
    return replace(item, message_channel_id=None, message_id=None)
