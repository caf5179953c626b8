"""Discord's side of channel levels: a channel's age restriction as Discord reports it, the
member's private notice when a result is kept from their channel, and a moderator's release
of such a result (to the guild's age-restricted release channel, or to the member by DM)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import discord

from bot.discord_adapter.access import age_restricted
from bot.discord_adapter.earlier_posts import earlier_posts_in
from bot.discord_adapter.embeds import result_embed
from bot.discord_adapter.files import MemoryFile
from bot.discord_adapter.publisher import DEFAULT_UPLOAD_LIMIT
from bot.discord_adapter.uploads import (
    MESSAGE_BYTES,
    NETWORK_ERRORS,
    fit_all,
    passing_faults,
    split,
)
from bot.engine.publisher import PostFailed, ResultImage
from bot.engine.safety import ChannelNow, ReleaseFailed
from bot.media.pool import ImagePool
from bot.store.db import utcnow
from bot.store.jobs import JobRecord

log = logging.getLogger(__name__)

# A follow-up needs the interaction's token to live a little longer than the request takes.
TOKEN_MARGIN = timedelta(seconds=30)


class MatureDesk:
    """The engine's MemberNotices and the review's ReleasePoster."""

    def __init__(self, bot: discord.Client, images: ImagePool, clock: Any = utcnow) -> None:
        self.bot = bot
        # Fitting for Discord's upload limit, on the pool shared with intake and delivery.
        self.images = images
        self.clock = clock

    # -- telling the member privately -------------------------------------------------------
    async def tell_privately(self, job: JobRecord, text: str) -> bool:
        """An ephemeral follow-up while the command's token lives, else a DM."""
        if self._token_alive(job.interaction_token, job.interaction_expires_at):
            assert job.interaction_token is not None and self.bot.application_id is not None
            hook = discord.Webhook.partial(
                self.bot.application_id, job.interaction_token, client=self.bot
            )
            hook.type = discord.WebhookType.application  # the interaction's follow-ups
            try:
                await hook.send(text, ephemeral=True)
                return True
            except discord.HTTPException as exc:
                log.info("job %s: private follow-up refused (%s); trying a DM", job.id, exc.status)
            except discord.RateLimited:  # a long 429 (ratelimits.py)
                log.info("job %s: private follow-up rate limited; trying a DM", job.id)
            except NETWORK_ERRORS as exc:  # perhaps made: told twice beats not at all
                why = type(exc).__name__
                log.warning("job %s: private follow-up not answered (%s); trying a DM", job.id, why)
        try:
            user = await self.bot.fetch_user(job.member_id)
            await user.send(f"About your request in <#{job.channel_id}>: {text}")
            return True
        except discord.HTTPException as exc:
            log.info("job %s: the member takes no DMs (%s)", job.id, exc.status)
            return False
        except discord.RateLimited as exc:
            log.warning("job %s: DM rate limited for %.0fs", job.id, exc.retry_after)
            return False
        except NETWORK_ERRORS as exc:
            log.warning("job %s: DM not answered (%s)", job.id, type(exc).__name__)
            return False

    async def channel_now(self, channel_id: int) -> ChannelNow | None:
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
            parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
            if isinstance(channel, discord.Thread) and channel.parent is None:
                # A thread's restriction is its parent's; an uncached parent is fetched.
                channel = await self.bot.fetch_channel(channel.parent_id)
        except discord.HTTPException as exc:
            log.info("channel %s: age restriction unknown (%s)", channel_id, exc.status)
            return None
        except discord.RateLimited:
            log.info("channel %s: age restriction unknown (rate limited)", channel_id)
            return None
        except NETWORK_ERRORS as exc:
            log.warning("channel %s: age restriction unknown (%s)", channel_id, type(exc).__name__)
            return None
        return ChannelNow(age_restricted(channel), parent_id)

    async def cannot_post(self, channel_id: int) -> str | None:
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        except discord.NotFound:
            return "it was deleted"
        except discord.Forbidden:
            return "I cannot see it any more"
        except (discord.HTTPException, discord.RateLimited, *NETWORK_ERRORS) as exc:
            log.info("channel %s: whether I can post there is unknown (%s)", channel_id, exc)
            return None  # a passing fault: delivery has its own fallbacks
        me = getattr(getattr(channel, "guild", None), "me", None)
        if me is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            return None
        perms = channel.permissions_for(me)
        thread = isinstance(channel, discord.Thread)
        if isinstance(channel, discord.Thread) and channel.locked and not perms.manage_threads:
            return "it is locked"  # only those who may manage threads post there
        send = perms.send_messages_in_threads if thread else perms.send_messages
        # Without View Channel or Send Messages, Discord takes the rest away too: name the root.
        if not perms.view_channel:
            missing = ["View Channel"]
        elif not send:
            missing = ["Send Messages in Threads" if thread else "Send Messages"]
        else:
            needed = (("Attach Files", perms.attach_files), ("Embed Links", perms.embed_links))
            missing = [name for name, granted in needed if not granted]
        return f"I need {' and '.join(missing)} there" if missing else None

    def _token_alive(self, token: str | None, expires: datetime | None) -> bool:
        return bool(token) and expires is not None and self.clock() < expires - TOKEN_MARGIN

    # -- releasing a result -----------------------------------------------------------------
    async def post_release(
        self, job: JobRecord, images: list[ResultImage], channel_id: int | None
    ) -> list[int]:
        if channel_id is None:
            return await self._to_dm(job, images)
        channel = await self._release_channel(channel_id)
        guild = getattr(channel, "guild", None)
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        mention = discord.AllowedMentions(
            users=[discord.Object(job.member_id)], everyone=False, roles=False
        )
        text = f"<@{job.member_id}> a moderator released your result from <#{job.channel_id}>."
        refused = (
            f"I am not allowed to post it in <#{channel_id}> (I need Send Messages and Attach "
            "Files there)"
        )
        return await self._send(job, images, limit, channel.send, text, mention, refused=refused)

    async def find_release(self, job: JobRecord, channel_id: int | None) -> list[int] | None:
        """The messages of an earlier post of this release, when it is there whole: the
        process died (or stopped) after Discord took it and before it was recorded."""
        try:
            with passing_faults():
                if channel_id is None:
                    user = await self.bot.fetch_user(job.member_id)
                    where: discord.abc.Messageable = user.dm_channel or await user.create_dm()
                else:
                    where = await self._release_channel(channel_id)
                return await earlier_posts_in(self.bot, where, job, limit=100)
        except discord.HTTPException as exc:  # cannot look (DMs closed...): the post says why
            log.info("job %s: no look for an earlier release (%s)", job.id, exc.status)
            return None

    async def _release_channel(self, channel_id: int) -> discord.abc.Messageable:
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        except discord.HTTPException as exc:
            raise ReleaseFailed(f"I cannot see <#{channel_id}> ({exc.status})") from None
        except discord.RateLimited as exc:
            raise PostFailed(f"Discord asks to wait {exc.retry_after:.0f}s", retry=True) from None
        if not isinstance(channel, discord.abc.Messageable):
            raise ReleaseFailed(f"<#{channel_id}> is not a text channel")
        if not age_restricted(channel):
            raise ReleaseFailed(f"<#{channel_id}> is no longer age-restricted in Discord")
        return channel

    async def _to_dm(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        try:
            user = await self.bot.fetch_user(job.member_id)
        except discord.HTTPException as exc:
            raise ReleaseFailed(f"I cannot find the member ({exc.status})") from None
        except discord.RateLimited as exc:
            raise PostFailed(f"Discord asks to wait {exc.retry_after:.0f}s", retry=True) from None
        text = f"A moderator reviewed your result from <#{job.channel_id}> and sent it to you here."
        return await self._send(
            job,
            images,
            DEFAULT_UPLOAD_LIMIT,
            user.send,
            text,
            discord.AllowedMentions.none(),
            refused="the member does not accept direct messages from me (or left the server)",
        )

    async def _send(
        self,
        job: JobRecord,
        images: list[ResultImage],
        limit: int,
        send: Any,
        text: str,
        mentions: discord.AllowedMentions,
        *,
        refused: str,
    ) -> list[int]:
        """`refused`: what the moderator reads when Discord refuses the post (403)."""
        fitted = await fit_all(self.images, images, limit)
        parts = split(fitted, limit, MESSAGE_BYTES)
        posted: list[int] = []
        for number, chunk in enumerate(parts, start=1):
            first_n, first = chunk[0]
            name = f"{job.id}-{first_n + 1}.{first.extension}"
            embed = result_embed(job, [f for _, f in chunk], name, (number, len(parts)))
            files = [MemoryFile(f.data, f"{job.id}-{n + 1}.{f.extension}") for n, f in chunk]
            try:
                with passing_faults():
                    message = await send(
                        content=text if number == 1 else None,
                        embed=embed,
                        files=files,
                        allowed_mentions=mentions,
                    )
            except discord.Forbidden:
                raise ReleaseFailed(refused) from None
            except discord.NotFound as exc:
                raise ReleaseFailed(f"Discord refused the post ({exc.status})") from None
            except discord.HTTPException as exc:  # any other refusal: tried again later too
                raise PostFailed(f"Discord answered {exc.status}", retry=True) from None
            posted.append(message.id)
        return posted
