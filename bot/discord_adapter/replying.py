"""A result that answers an image (an upscale, a cut-out): posted in the channel as a reply to
the message it was made from, mentioning only the member who asked."""

from __future__ import annotations

import discord

from bot.discord_adapter.embeds import title
from bot.store.jobs import JobRecord


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
        fail_if_not_exists=False,  # the image was deleted meanwhile: post all the same
    )
    mention = discord.AllowedMentions(
        users=[discord.Object(job.member_id)], everyone=False, roles=False, replied_user=False
    )
    return await channel.send(
        content=f"<@{job.member_id}> {title(job)}: done.",
        embed=embed,
        files=files,
        view=view,
        reference=reference,
        allowed_mentions=mention,
    )
