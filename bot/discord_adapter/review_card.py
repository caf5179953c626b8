"""What a review item's message shows: the embed (the job, why it is here, the money, the
decisions so far), the buttons that still apply, and the job's source images."""

from __future__ import annotations

import discord

from bot.discord_adapter.buttons.base import view_of
from bot.discord_adapter.buttons.review import REVIEW_BUTTONS
from bot.discord_adapter.embeds import (
    as_written,
    describe_options,
    link,
    operation_word,
    truncate,
)
from bot.discord_adapter.files import MemoryFile
from bot.discord_adapter.review_text import heading, source_text
from bot.review import Action
from bot.safety import levels
from bot.store.jobs import JobRecord, SourceImage
from bot.store.moderation import ItemEvent, ReviewItem

VERBS = {
    "approve": "Approved",
    "reject": "Rejected",
    "refund": "Refunded",
    "dismiss": "Dismissed",
    "strike": "Strike",
    "ban": "Ban",
    "appeal": "Appeal",
    "release": "Released to the release channel",
    "dm": "Sent to the member's DMs",
    "release_failed": "Release failed",
}


def review_view(
    item: ReviewItem, events: list[ItemEvent], refundable: int, release_channel: int | None = None
) -> discord.ui.View:
    done = {e.action for e in events}
    actions = []
    if item.open and item.kind == "held":
        actions = [Action.APPROVE, Action.REJECT]
    elif item.open:
        actions = [Action.REFUND] if refundable > 0 else []
        if item.kind == "mature":  # a result kept from its channel: release it elsewhere
            actions[:0] = [Action.RELEASE, Action.SEND_DM] if release_channel else [Action.SEND_DM]
        actions.append(Action.DISMISS)
    if item.kind != "undelivered":  # nobody to sanction for a failed post
        actions += [a for a in (Action.STRIKE, Action.BAN) if a.value not in done]
    return view_of(*(REVIEW_BUTTONS[a](item.id) for a in actions)) or discord.ui.View()


def item_embed(
    item: ReviewItem,
    job: JobRecord,
    events: list[ItemEvent],
    *,
    strikes: int,
    window_days: int,
    money: str,
    release_channel: int | None = None,
) -> discord.Embed:
    title = f"{heading(item)} · #{item.id}"
    colour = discord.Colour.orange() if item.open else discord.Colour.dark_grey()
    # One line: a prompt's line breaks would stretch the card down the moderators' channel.
    prompt = " ".join(job.prompt.split())
    embed = discord.Embed(title=title, description=as_written(prompt, 1500), colour=colour)
    embed.add_field(
        name="Member",
        value=f"<@{job.member_id}> · {strikes} strike{'s' if strikes != 1 else ''} in "
        f"{window_days} days",
        inline=True,
    )
    where = f"<#{job.channel_id}>"
    if job.status_message_id:
        where += f" · [request]({link(job.guild_id, job.channel_id, job.status_message_id)})"
    embed.add_field(name="Where", value=where, inline=True)
    embed.add_field(
        name="Request",
        value=truncate(f"{job.model} · {operation_word(job)} · {describe_options(job)}", 1024),
        inline=False,
    )
    embed.add_field(name="Reason", value=truncate(item.reason or "—", 1024), inline=False)
    embed.add_field(name="Source", value=source_text(item, release_channel), inline=False)
    embed.add_field(name="Buzz", value=money, inline=False)
    if item.appeal_note:
        embed.add_field(
            name="Appeal from the member", value=as_written(item.appeal_note, 1024), inline=False
        )
    lines = [
        f"{VERBS.get(e.action, e.action)} by <@{e.actor_id}> <t:{int(e.at.timestamp())}:R>"
        for e in events
    ]
    state = "open" if item.open else item.status
    embed.add_field(
        name=f"State: {state}", value=truncate("\n".join(lines) or "—", 1024), inline=False
    )
    embed.set_footer(text=f"review #{item.id} · job {job.id}")
    return embed


def sources_shown(job: JobRecord, age_restricted: bool) -> bool:
    """Whether the job's source images may be shown in a channel (`age_restricted`: Discord's
    age restriction on it). Images from an age-restricted channel may be mature: a channel
    without the restriction must not show them (Discord's rules, and the Safety design)."""
    return not levels.above(job.max_rating, levels.cap(age_restricted))


def add_hidden_sources(embed: discord.Embed, count: int) -> None:
    """Say on the item why its `count` source images are not attached."""
    embed.add_field(
        name="Sources",
        value=f"{count} image{'s' if count != 1 else ''} from an age-restricted channel, "
        "not shown here: this channel is not age-restricted.",
        inline=False,
    )


def source_files(sources: list[SourceImage]) -> list[discord.File]:
    return [
        MemoryFile(s.data, f"{s.role}{n + 1}.{_ext(s.mime)}") for n, s in enumerate(sources[:10])
    ]


def _ext(mime: str) -> str:
    return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime, "png")
