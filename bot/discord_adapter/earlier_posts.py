"""An earlier post of a job's result, looked for before posting it (again): in the channel,
then in the member's DMs, by the job id its embed footer carries. This is what makes delivery
exactly-once across restarts and across Discord answering 5xx to a post it made. And a job's
status message whose post lost its answer, found the same way."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import discord

from bot.discord_adapter.copies import one_per_part
from bot.discord_adapter.embeds import RESULT_FOOTER, marker
from bot.discord_adapter.result_routes import ResultRoutes
from bot.discord_adapter.uploads import NETWORK_ERRORS, passing_faults
from bot.engine.publisher import PostFailed
from bot.store.jobs import JobRecord

log = logging.getLogger(__name__)

# Messages of the channel looked at from each end of the job's time there.
LOOK_AT = 200


async def earlier_delivery(
    bot: discord.Client, routes: ResultRoutes, job: JobRecord, keep: list[int] | None = None
) -> list[int] | None:
    """The ids of the messages that carry this job's result, one per part, if ALL its parts
    were posted (the channel, then the member's DMs); extra copies are removed. A partial
    post is removed, so the engine posts the whole result again. With `keep` (a post that
    just succeeded): those stay, every other copy goes, and they are the answer."""
    if bot.user is None:
        return None
    after = _since(job)
    found: dict[int, tuple[int, int]] = {}
    messages: dict[int, discord.Message] = {}
    in_dm: int | None = None  # the DM channel the result was found in
    try:
        with passing_faults():
            channel = await routes.channel(job.channel_id)
            seen = 0
            async for message in channel.history(limit=LOOK_AT, after=after, oldest_first=False):
                seen += 1
                _collect(bot, message, job.id, found, messages)
            if not found and seen == LOOK_AT:
                # A busy channel moved on past the newest LOOK_AT: the post, if made, came
                # soon after the job started, so the oldest since then are looked at too.
                async for message in channel.history(limit=LOOK_AT, after=after, oldest_first=True):
                    _collect(bot, message, job.id, found, messages)
    except (discord.Forbidden, discord.NotFound):
        log.warning("job %s: cannot read the channel to check for an earlier post", job.id)
    except discord.HTTPException as exc:  # any other refusal: tried again later too
        raise PostFailed(f"Discord answered {exc.status}", retry=True) from None
    if not found:
        # A refusal (DMs closed) means none there; a passing fault, to look again later.
        with contextlib.suppress(discord.HTTPException), passing_faults():
            user = await bot.fetch_user(job.member_id)
            dm = user.dm_channel or await user.create_dm()
            async for message in dm.history(limit=50, after=after, oldest_first=False):
                _collect(bot, message, job.id, found, messages)
            if found:
                in_dm = dm.id
    if keep is not None:
        await _delete([m for i, m in messages.items() if i not in keep])
        return keep
    whole = await _whole(found, messages)
    if whole and in_dm is not None and job.dm_channel_id is None:
        # Sent by DM by a run that stopped before it said so (only a refused channel sends a
        # result by DM): /jobs and the status message must not point at the channel.
        await routes.note_dm(job, in_dm, "the channel could not take it")
    return whole


async def earlier_posts_in(
    bot: discord.Client, channel: discord.abc.Messageable, job: JobRecord, *, limit: int = 200
) -> list[int] | None:
    """The ids of the messages in `channel` that carry this job's result, one per part, if
    ALL its parts are there; extra copies and half a result are removed. Discord's refusals
    and faults are raised (the caller knows what they mean where it looks)."""
    if bot.user is None:
        return None
    found: dict[int, tuple[int, int]] = {}
    messages: dict[int, discord.Message] = {}
    async for message in channel.history(limit=limit, after=_since(job), oldest_first=False):
        _collect(bot, message, job.id, found, messages)
    return await _whole(found, messages)


def _since(job: JobRecord) -> discord.Object:
    since = job.created_at - timedelta(seconds=5)
    return discord.Object(id=discord.utils.time_snowflake(since))


async def _whole(
    found: dict[int, tuple[int, int]], messages: dict[int, discord.Message]
) -> list[int] | None:
    if not found:
        return None
    picked = one_per_part(found)
    kept, extra = picked if picked is not None else (None, list(messages))
    # Extra copies (a post created, then answered 5xx) or half a result: taken down.
    await _delete([messages[message_id] for message_id in extra])
    return kept


async def _delete(messages: list[discord.Message]) -> None:
    for message in messages:
        with contextlib.suppress(discord.HTTPException, discord.RateLimited):
            await message.delete()


async def earlier_status(bot: discord.Client, routes: ResultRoutes, job: JobRecord) -> int | None:
    """The id of the job's status message, when Discord's answer to its post was lost (a
    dropped connection, a body that is not JSON): it may have been posted all the same."""
    if bot.user is None:
        return None
    after = discord.Object(id=discord.utils.time_snowflake(job.created_at - timedelta(seconds=5)))
    try:
        channel = await routes.channel(job.channel_id)
        async for message in channel.history(limit=50, after=after, oldest_first=False):
            if message.author.id == bot.user.id and any(
                (embed.footer.text or "").partition(" · ")[0] == marker(job.id)
                for embed in message.embeds
            ):
                return message.id
    except (discord.HTTPException, discord.RateLimited, *NETWORK_ERRORS) as exc:
        why = getattr(exc, "status", None) or type(exc).__name__
        log.warning("job %s: cannot look for its status message (%s)", job.id, why)
    return None


def _collect(
    bot: discord.Client,
    message: discord.Message,
    job_id: str,
    found: dict[int, tuple[int, int]],
    messages: dict[int, discord.Message],
) -> None:
    if bot.user is None or message.author.id != bot.user.id:
        return
    for embed in message.embeds:
        match = RESULT_FOOTER.match(embed.footer.text or "")
        if match and match["job"] == job_id:
            found[message.id] = (int(match["part"] or 1), int(match["of"] or 1))
            messages[message.id] = message
