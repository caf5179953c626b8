"""What members and moderators read: the status embed of a job, its result and its details.
Pure functions of the job record (and a few figures), so every message says the same."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import discord

from bot.catalog.tools import Tool, describe, tool_of
from bot.media.fit import FittedImage
from bot.store.jobs import JobRecord, JobStatus
from bot.store.ledger_records import Allowance

J = JobStatus


SIMULATED_NOTE = "SIMULATED: placeholder images, no Buzz spent upstream"


def marker(job_id: str) -> str:
    return f"job {job_id}"


def result_marker(job_id: str) -> str:
    """How a result post is recognised (the status message only says "job …")."""
    return f"result of job {job_id}"


RESULT_FOOTER = re.compile(
    r"result of job (?P<job>j[0-9a-f]+)(?: · part (?P<part>\d+)/(?P<of>\d+))?"
)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# A "[" that no backslash escapes (an even number of them before it escape each other).
LIVE_BRACKET = re.compile(r"(?<!\\)((?:\\\\)*)\[")


def as_written(text: str, limit: int) -> str:
    """A member's text (a prompt, an appeal) as they wrote it: Discord's markdown escaped, so no
    underscore or asterisk disappears into formatting and no masked link is posted under the
    bot's name."""
    escaped = discord.utils.escape_markdown(text)
    # escape_markdown escapes only the first of several masked links on a line.
    return truncate(LIVE_BRACKET.sub(r"\1\\[", escaped), limit)


def charge_words(charged: int, refunded: int = 0) -> str:
    """What a job cost the member, worded alike wherever it shows: after a refund, what is
    still charged, then the refund out of the whole ("156 Buzz charged (78 of 234 refunded)")."""
    if not refunded:
        return f"{charged:,} Buzz charged"
    return f"{charged - refunded:,} Buzz charged ({refunded:,} of {charged:,} refunded)"


def describe_options(job: JobRecord) -> str:
    target = job.options.get("target")  # a prompt enhancement: the image request it is for
    parts = [f"for {target.get('model')}"] if isinstance(target, dict) else []
    parts += [
        f"{k} {v}" for k, v in job.options.items() if k != "prompt" and not isinstance(v, dict)
    ]
    return " · ".join(parts) or "defaults"


def operation_word(job: JobRecord) -> str:
    tool = tool_of(job.model)
    if tool is not None:
        return tool.label.lower()
    return "edit" if job.operation == "editImage" else "create"


def title(job: JobRecord) -> str:
    """ "gpt-image-2 · create", or what a tool did: "Upscale ×2 of image 1"."""
    tool = tool_of(job.model)
    if tool is not None:
        return describe(tool, job.options)
    return f"{job.model} · {operation_word(job)}"


def describe_source(job: JobRecord) -> str:
    """What a job was made from, for its Details: "Upscale ×2 of image 1 · job `j…`"."""
    text = f"{title(job)} · job `{job.id}`"
    if job.delivered_message_ids and job.output is None:  # an enhancement's was private
        text += f" · [open]({link(job.guild_id, job.channel_id, job.delivered_message_ids[0])})"
    return text


DONE_LINES = {
    Tool.ENHANCE: "✅ Done — your enhanced prompt is shown to you privately",
    Tool.UPSCALE: "✅ Done — posted as a reply to the image it came from",
    Tool.REMOVE_BACKGROUND: "✅ Done — posted as a reply to the image it came from",
}


def _ts(when: datetime | None, style: str = "R") -> str:
    return f"<t:{int(when.timestamp())}:{style}>" if when else "—"


def status_line(job: JobRecord, message: str | None, *, privately: str | None = None) -> str:
    """The state in a few words; Discord renders the <t:…:R> stamps as live elapsed times.
    `privately`: why a done job's result went to the member by DM, not here."""
    if job.status is J.HELD:
        return "⏸️ Waiting for a moderator's review before it runs"
    if job.status is J.QUEUED:
        # The submit long-poll may already be running the job: do not claim it is still queued.
        return f"⏳ Waiting for the image service — asked {_ts(job.created_at)}"
    if job.status in (J.SUBMITTED, J.RUNNING):
        if job.workflow_status in ("unassigned", "preparing", "scheduled"):
            where = f", position {job.queue_position + 1}" if job.queue_position is not None else ""
            return f"⏳ In the image service's queue{where} — asked {_ts(job.created_at)}"
        if job.workflow_status == "processing":
            return f"🎨 Generating — started {_ts(job.started_at or job.submitted_at)}"
        return f"📨 Sent to the image service {_ts(job.submitted_at or job.created_at)}"
    if job.status is J.DELIVERING:
        return "📤 Posting the images…"
    if job.status is J.DONE:
        if job.missing_images:
            total = len(job.result_images)
            return (
                f"⚠️ Done, but {job.missing_images} of {total} images could not be fetched; "
                f"the others are {'sent to you by DM' if privately else 'posted below'}, and a "
                "moderator will look at the charge"
            )
        if privately:
            return f"✅ Done — sent to you by DM: {privately}"
        tool = tool_of(job.model)
        return DONE_LINES[tool] if tool is not None else "✅ Done — the images are posted below"
    icon = {J.BLOCKED: "🚫", J.CANCELED: "⏹️", J.EXPIRED: "⌛", J.REJECTED: "🚫"}.get(
        job.status, "❌"
    )
    text = message or job.error or job.status.value
    # Only the first letter: str.capitalize() would lowercase "Buzz", "WebP", field names...
    return f"{icon} {text[:1].upper()}{text[1:]}"


def status_embed(
    job: JobRecord,
    message: str | None = None,
    *,
    balance: int | None = None,
    refunded: int = 0,
    covered: int = 0,
    notes: Sequence[str] = (),
    privately: str | None = None,
) -> discord.Embed:
    """`covered`: the part of the charge the member could not pay, the server's loss;
    `privately`: why the result went to the member by DM."""
    colour = {
        J.DONE: discord.Colour.green(),
        J.FAILED: discord.Colour.red(),
        J.BLOCKED: discord.Colour.dark_red(),
        J.HELD: discord.Colour.orange(),
    }.get(job.status, discord.Colour.blurple())
    embed = discord.Embed(title=title(job), description=as_written(job.prompt, 1000), colour=colour)
    embed.add_field(name="Options", value=truncate(describe_options(job), 1024), inline=False)
    if job.charged is not None:
        # What the member paid (the cost less the server's part), refunds worded as everywhere.
        cost = charge_words(job.charged - covered, refunded)
        if covered:
            cost += f" · it cost {job.charged:,}; the server covered {covered:,}"
    else:
        cost = f"{job.hold_amount or job.estimate:,} Buzz held"
    if balance is not None:
        cost += f" · your balance: {balance:,}"
    embed.add_field(name="Buzz", value=cost, inline=False)
    if notes:
        embed.add_field(name="Note", value=truncate("; ".join(notes), 1024), inline=False)
    embed.add_field(
        name="Status",
        value=truncate(status_line(job, message, privately=privately), 1024),
        inline=False,
    )
    embed.set_footer(text=_footer(job))
    return embed


def _footer(job: JobRecord, *, result: bool = False, part: tuple[int, int] = (1, 1)) -> str:
    text = result_marker(job.id) if result else marker(job.id)
    if result and part[1] > 1:
        text += f" · part {part[0]}/{part[1]}"
    return f"{text} · {SIMULATED_NOTE}" if job.simulated else text


def result_embed(
    job: JobRecord,
    fitted: list[FittedImage],
    first_name: str,
    part: tuple[int, int] = (1, 1),
    covered: int = 0,
) -> discord.Embed:
    count = len(fitted)
    of = f" (part {part[0]} of {part[1]})" if part[1] > 1 else ""
    what = f"{job.model} · {count} image{'s' if count != 1 else ''}"
    embed = discord.Embed(
        title=f"{title(job) if tool_of(job.model) else what}{of}",
        description=as_written(job.prompt, 1000),
        colour=discord.Colour.green(),
    )
    embed.add_field(name="Options", value=truncate(describe_options(job), 1024), inline=False)
    embed.add_field(name="Buzz charged", value=f"{(job.charged or 0) - covered:,}", inline=True)
    embed.add_field(name="Requested by", value=f"<@{job.member_id}>", inline=True)
    notes = sorted({f.note for f in fitted if f.note})
    if job.missing_images:
        total = len(job.result_images)
        notes.insert(0, f"{job.missing_images} of {total} images could not be fetched")
    if notes:
        embed.add_field(name="Note", value=truncate("; ".join(notes), 1024), inline=False)
    embed.set_image(url=f"attachment://{first_name}")
    embed.set_footer(text=_footer(job, result=True, part=part))
    return embed


def details_embed(
    job: JobRecord,
    events: list[tuple[str, str | None, datetime]],
    hold: int | None,
    *,
    parent: JobRecord | None = None,
) -> discord.Embed:
    embed = discord.Embed(
        title=f"Job {job.id}",
        description=as_written(job.prompt, 4000),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="Model", value=title(job), inline=True)
    embed.add_field(name="Status", value=job.status.value, inline=True)
    embed.add_field(name="Options", value=truncate(describe_options(job), 1024), inline=False)
    upstream = job.workflow_id or ("no id (one call)" if job.submitted_at else "not submitted")
    embed.add_field(name="Workflow", value=upstream, inline=False)
    if job.parent_job_id:  # lineage: the job this one was made from
        made_from = describe_source(parent) if parent else f"job `{job.parent_job_id}`"
        embed.add_field(name="Made from", value=truncate(made_from, 1024), inline=False)
    money = f"estimate {job.estimate:,}"
    if job.whatif is not None:
        money += f" · orchestrator's whatif {job.whatif:,}"
    money += f" · held {hold:,}" if hold is not None else ""
    money += f" · charged {job.charged:,}" if job.charged is not None else " · not settled yet"
    embed.add_field(name="Buzz", value=money, inline=False)
    timings = [
        f"asked {_ts(job.created_at, 'T')}",
        f"submitted {_ts(job.submitted_at, 'T')}",
        f"started {_ts(job.started_at, 'T')}",
        f"finished {_ts(job.finished_at, 'T')}",
        f"posted {_ts(job.delivered_at, 'T')}",
    ]
    embed.add_field(name="Timings", value="\n".join(timings), inline=False)
    if job.usage:
        embed.add_field(name="Usage", value=truncate(usage_text(job.usage), 1024), inline=False)
    history = [
        f"{_ts(at, 'T')} {status}" + (f" ({detail})" if detail else "")
        for status, detail, at in events[-10:]
    ]
    embed.add_field(name="History", value=truncate("\n".join(history) or "—", 1024), inline=False)
    if job.error:
        embed.add_field(name="Reason", value=truncate(job.error, 1024), inline=False)
    embed.set_footer(text=_footer(job))
    return embed


def usage_text(usage: dict[str, Any]) -> str:
    """What the upstream service reported using: "5,594 tokens: input 1,234 (text 50, image
    1,184) · output 4,360 (image 4,360)"."""

    def count(value: object) -> str:
        return f"{value:,}" if isinstance(value, int) else str(value)

    def part(name: str) -> str | None:
        total = usage.get(f"{name}_tokens")
        if total is None:
            return None
        details = usage.get(f"{name}_tokens_details")
        inner = ""
        if isinstance(details, dict) and details:
            inner = (
                " ("
                + ", ".join(f"{k.removesuffix('_tokens')} {count(v)}" for k, v in details.items())
                + ")"
            )
        return f"{name} {count(total)}{inner}"

    parts = [p for p in (part("input"), part("output")) if p]
    total = usage.get("total_tokens")
    head = f"{count(total)} tokens" if total is not None else "tokens"
    return f"{head}: {' · '.join(parts)}" if parts else head


def allowance_source(allowance: Allowance) -> str:
    """Where a member's allowance comes from; a role mentioned (shown by its name), not its
    bare number."""
    if allowance.role_id is not None:
        return f"role <@&{allowance.role_id}>"
    return allowance.source


def link(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def link_in_dm(dm_channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/@me/{dm_channel_id}/{message_id}"
