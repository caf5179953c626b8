"""A result that answers an image (an upscale, a cut-out): posted in the channel as a reply to
the message it was made from, mentioning only the member who asked.

If that image was deleted meanwhile (by a moderator taking it down, or its member), the result
is not posted in the channel at all: it would bring the removed image back publicly.
SourceGone tells the publisher to send it to the member privately instead."""

from __future__ import annotations

import discord

from bot.discord_adapter.embeds import title
from bot.store.jobs import JobRecord


class SourceGone(Exception):
    """The message a result answers no longer exists."""


def unknown_reference(exc: discord.HTTPException) -> bool:
    """Discord's 400 for a reply to a deleted message (50035, message_reference)."""
    return exc.status == 400 and exc.code == 50035 and "message_reference" in exc.text


async def reply_to_source(
    channel: discord.abc.Messageable,
    job: JobRecord,
    embed: discord.Embed,
    files: list[discord.File],
    view: discord.ui.View,
) -> discord.Message:
    assert job.reply_to_message_id is not None
    reference = discord.MessageReference(
        message_id=job.reply_to_message_id,
        channel_id=job.channel_id,
        guild_id=job.guild_id,
        fail_if_not_exists=True,  # deleted meanwhile: never a public copy of a removed image
    )
    mention = discord.AllowedMentions(
        users=[discord.Object(job.member_id)], everyone=False, roles=False, replied_user=False
    )
    try:
        return await channel.send(
            content=f"<@{job.member_id}> {title(job)}: done.",
            embed=embed,
            files=files,
            view=view,
            reference=reference,
            allowed_mentions=mention,
        )
    except discord.HTTPException as exc:
        if unknown_reference(exc):
            raise SourceGone(job.reply_to_message_id) from None
        raise
