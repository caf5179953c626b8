"""Where a job's result goes: a reply to the image it came from (an upscale, a cut-out), else
an interaction follow-up while the 15-minute token lives, else the channel mentioning the
member, else a DM (also when the channel's slowmode would hold the post past the job's
delivery deadline, or the channel would drop its embed: no Embed Links). A reply whose image
was deleted meanwhile raises SourceGone (replying.py); the publisher then posts the result
`private`ly: by DM only, saying why. A refusal (403, 404, an archived thread's 400) falls
through to the next; 413, 429 and 5xx do not (uploads.sending turns them into TooLarge and
PostFailed), nor do they when they answer the channel's look-up."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
import discord

from bot.catalog.tools import Tool
from bot.discord_adapter.buttons.result import result_view
from bot.discord_adapter.embeds import title
from bot.discord_adapter.ratelimits import webhook_session
from bot.discord_adapter.replying import reply_to_source
from bot.discord_adapter.uploads import passing_faults, sending
from bot.engine.publisher import PostFailed
from bot.store.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

# Seconds an edit of a status message may take (aiohttp's own limit is 5 minutes). While one
# waits, discord.py holds every other call on the interaction's webhook: the result's post too.
EDIT_WAIT = 30.0


def embeds_shown(channel: discord.abc.Messageable) -> bool:
    """Whether the bot may show embeds in the channel. Without Embed Links Discord takes a
    post but drops its embed without a word: the job's card, and the footer by which the
    post is found again (so as never to post it twice)."""
    me = getattr(getattr(channel, "guild", None), "me", None)
    if me is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return True  # not known here: posted, as before
    return channel.permissions_for(me).embed_links


def slowed(channel: object) -> bool:
    """Whether the channel has a slowmode: a long wait it asks for lasts (posting again soon
    meets the same wait), unlike other rate limits."""
    return bool(getattr(channel, "slowmode_delay", 0))


def _duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes == 1:
        return "a minute"
    return f"{minutes} minutes" if minutes < 120 else f"{round(minutes / 60)} hours"


class ResultRoutes:
    def __init__(
        self,
        bot: discord.Client,
        clock: Callable[[], datetime],
        token_margin: timedelta,
        jobs: JobStore | None = None,
    ) -> None:
        self.bot, self.clock, self.token_margin = bot, clock, token_margin
        # Where a result sent by DM is recorded on its job (/jobs, the status after a restart).
        self.jobs = jobs
        self._session: aiohttp.ClientSession | None = None
        # Jobs whose result went to the member by DM, and why (for their final status).
        self.sent_privately: dict[str, str] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        job: JobRecord,
        embed: discord.Embed,
        files: Callable[[], list[discord.File]],
        largest: int,
        tools: frozenset[Tool],
        *,
        private: bool = False,
    ) -> discord.Message:
        """One message of the result, by the first route that takes it; PostFailed(retry=False)
        when none does. `private`: its source image was deleted, so by DM only."""
        if private:
            return await self._dm(
                job,
                f"The image this was made from was deleted from <#{job.channel_id}>, so your "
                f"{title(job)} was not posted there; here it is, only for you.",
                embed,
                files,
                largest,
                why="the image it was made from was deleted",
            )
        channel: discord.abc.Messageable | None = None  # looked up, if it could be
        if job.reply_to_message_id is not None:  # an upscale or a cut-out answers its image
            view = result_view(job, tools)
            try:
                channel = await self.lookup(job.channel_id)
                if embeds_shown(channel):  # else by the routes below
                    return await sending(
                        reply_to_source(channel, job, embed, files(), view), largest
                    )
            except discord.HTTPException as exc:  # a refusal: 5xx, 429 and 413 raised above
                log.warning("job %s: cannot reply in the channel (%s)", job.id, exc.status)
            except PostFailed as exc:  # as for a post in the channel (below)
                if not (slowed(channel) and self.waits_past_deadline(job, exc)):
                    raise
            finally:
                view.stop()
        if self.token_alive(job):
            view = result_view(job, tools)
            try:
                return await sending(
                    self.webhook(job).send(embed=embed, files=files(), view=view, wait=True),
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
            channel = await self.lookup(job.channel_id)
            if not embeds_shown(channel):
                log.warning(
                    "job %s: no Embed Links in channel %s; sending the result by DM",
                    job.id,
                    job.channel_id,
                )
                return await self._dm(
                    job,
                    f"I may not show embeds in <#{job.channel_id}> (Embed Links), so here are "
                    "your images.",
                    embed,
                    files,
                    largest,
                    why="embeds cannot be shown in this channel (Embed Links)",
                )
            view = result_view(job, tools)
            try:
                return await sending(
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
        except discord.HTTPException as exc:  # refused (403, 404, an archived thread's 400...)
            log.warning(
                "job %s: cannot post in channel %s (%s); sending the result by DM",
                job.id,
                job.channel_id,
                exc.status,
            )
        except PostFailed as exc:
            if not (slowed(channel) and self.waits_past_deadline(job, exc)):
                raise  # any other wait: tried again soon (it may be shorter then)
            # A channel's slowmode (up to 6 hours): retried until the deadline, then lost.
            log.warning(
                "job %s: channel %s takes posts again only in %.0fs, past the delivery "
                "deadline; sending the result by DM",
                job.id,
                job.channel_id,
                exc.retry_after,
            )
            return await self._dm(
                job,
                f"<#{job.channel_id}> would take my next message only in "
                f"{_duration(exc.retry_after or 0)} (slowmode), so here are your images.",
                embed,
                files,
                largest,
                why="this channel's slowmode would hold it too long",
            )
        return await self._dm(
            job,
            f"I could not post in <#{job.channel_id}>, so here are your images.",
            embed,
            files,
            largest,
            why="it could not be posted in this channel",
        )

    def waits_past_deadline(self, job: JobRecord, exc: PostFailed) -> bool:
        """Whether the wait Discord asked for runs past the job's delivery deadline."""
        if exc.retry_after is None or job.deliver_by is None:
            return False
        return self.clock() + timedelta(seconds=exc.retry_after) >= job.deliver_by

    async def _dm(
        self,
        job: JobRecord,
        content: str,
        embed: discord.Embed,
        files: Callable[[], list[discord.File]],
        largest: int,
        *,
        why: str,
    ) -> discord.Message:
        # No buttons in a DM: they act on the job in its server and would only answer
        # "I cannot find that job here" (the channel copy, when it exists, has them).

        async def dm() -> discord.Message:
            user = await self.bot.fetch_user(job.member_id)
            return await user.send(content=content, embed=embed, files=files())

        try:
            # The look-up too: Discord failing it (5xx, 429) is a passing fault to retry,
            # not "nowhere to post".
            sent = await sending(dm(), largest)
        except discord.HTTPException as exc:
            raise PostFailed(
                f"nowhere to post: not in the channel, and the member's DMs are closed "
                f"({exc.status})",
                retry=False,
            ) from None
        await self.note_dm(job, sent.channel.id, why)
        return sent

    async def note_dm(self, job: JobRecord, dm_channel_id: int, why: str) -> None:
        """The job's result is in the member's DMs (`why`: not in its channel): said by its
        status and /jobs. A failed write is only a warning: the member has the result, so it
        must not count as "not posted" and be sent again; this run still words it."""
        self.sent_privately[job.id] = why
        if self.jobs is not None:
            try:
                await self.jobs.record_dm(job.id, dm_channel_id, why)
            except sqlite3.OperationalError as exc:  # locked, full, read-only
                log.warning("job %s: sent by DM, not recorded as such (%s)", job.id, exc)

    def token_alive(self, job: JobRecord, margin: timedelta | None = None) -> bool:
        """Whether the job's interaction token lives `margin` (the routes' own) from now."""
        margin = self.token_margin if margin is None else margin
        expires = job.interaction_expires_at
        return (
            bool(job.interaction_token) and expires is not None and self.clock() < expires - margin
        )

    def session(self) -> aiohttp.ClientSession:
        """Every webhook call's session (owned here, closed by close()): a long 429 on a
        follow-up or a status edit raises, where the bot's own session would sleep it out."""
        if self._session is None or self._session.closed:
            self._session = webhook_session()
        return self._session

    def webhook(self, job: JobRecord) -> discord.Webhook:
        assert job.interaction_token is not None and self.bot.application_id is not None
        return discord.Webhook.partial(
            self.bot.application_id, job.interaction_token, session=self.session(), client=self.bot
        )

    def followup(self, job: JobRecord) -> discord.Webhook:
        """The job's interaction as an application webhook (only those send ephemeral
        messages), as discord.py builds Interaction.followup, on the bounded session."""
        assert job.interaction_token is not None and self.bot.application_id is not None
        data = {"id": self.bot.application_id, "type": 3, "token": job.interaction_token}
        return discord.Webhook(
            data,  # type: ignore[arg-type]
            session=self.session(),
            state=self.bot._connection,
            token=self.bot.http.token,
        )

    async def lookup(self, channel_id: int) -> discord.abc.Messageable:
        """The channel to post in. An uncached one (a thread, just after a login) is fetched:
        Discord failing that (5xx, 429) is PostFailed(retry=True), to post there later, not
        a refusal that sends the result by DM."""
        with passing_faults():
            return await self.channel(channel_id)

    async def channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        assert isinstance(channel, discord.abc.Messageable)
        return channel

    # -- editing a job's status message ------------------------------------------------------
    async def edit(
        self,
        job: JobRecord,
        message_id: int | None,
        embed: discord.Embed,
        view: discord.ui.View | None,
        files: list[discord.File] | None = None,
        content: str | None = None,
    ) -> None:
        """Edit the job's message through its interaction while the token lives, else in the
        channel. `files`: the message's attachments from now on (None leaves them as they
        are); `content` likewise."""
        assert message_id is not None
        kwargs: dict = {"embed": embed, "view": view}
        if files is not None:
            kwargs["attachments"] = files
        if content is not None:
            kwargs["content"] = content
        async with asyncio.timeout(EDIT_WAIT):  # TimeoutError: a passing fault, tried again
            await self._edit_by_route(job, message_id, kwargs)
        if view is not None:
            view.stop()  # the registered DynamicItems answer the clicks, not this view

    async def _edit_by_route(self, job: JobRecord, message_id: int, kwargs: dict) -> None:
        if self.token_alive(job, timedelta(seconds=5)):
            try:
                await self.webhook(job).edit_message(message_id, **kwargs)
            except discord.HTTPException as exc:
                if exc.status not in (401, 404):
                    raise
                # The token expired sooner than our clock says (Discord's runs ahead): the
                # message is the bot's, so the channel route edits it as well.
                log.info(
                    "job %s: interaction token refused (%s); editing directly", job.id, exc.code
                )
                await self._edit_directly(job, message_id, kwargs)
        else:
            await self._edit_directly(job, message_id, kwargs)

    async def _edit_directly(self, job: JobRecord, message_id: int, kwargs: dict) -> None:
        # No need to fetch the channel to edit a message in it.
        channel = self.bot.get_partial_messageable(job.channel_id)
        await channel.get_partial_message(message_id).edit(**kwargs)
