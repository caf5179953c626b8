"""What moderators read about why an item is in their queue: its heading, its source (the
prompt filter's rule, AI pre-moderation's labels and scores, the orchestrator's block, a
result's rating against its channel's level) and its line in /mod queue. Moderators only:
none of this reaches the member (the filters cannot be probed)."""

from __future__ import annotations

from bot.discord_adapter.embeds import truncate
from bot.safety import levels
from bot.store.moderation import ReviewItem

# The /mod queue filter's choices: the stored source, and how moderators read it.
SOURCE_NAMES = {
    "filter": "Prompt filter",
    "premoderation": "AI pre-moderation",
    "orchestrator": "Orchestrator block",
    "mature": "Rated above the channel's level",
    "delivery": "Could not be posted",
}


def heading(item: ReviewItem) -> str:
    if item.kind == "held":
        if item.source == "premoderation":
            return "⏸️ Held by AI pre-moderation"
        return "⏸️ Held by the prompt filter"
    return {
        "blocked": "🚫 Blocked upstream",
        "undelivered": "📭 Charged, but nothing was posted (see the reason)",
        "mature": "🔞 Kept from its channel: rated above its level",
    }.get(item.kind, item.kind)


def source_text(item: ReviewItem, release_channel: int | None = None) -> str:
    """The item's source in a few lines, with what the source found."""
    details = item.details
    lines = [f"**{SOURCE_NAMES.get(item.source, item.source)}**"]
    if item.source == "premoderation":
        if details.get("error"):
            lines.append(f"The check failed ({details['error']}); held by the fallback.")
        scores = details.get("scores") or {}
        for label in details.get("labels") or []:
            lines.append(f"· {label}: {float(scores.get(label, 0)):.2f}")
        for label, reason in (details.get("reasons") or {}).items():
            lines.append(f"· {label}, the model's reason: {truncate(str(reason), 200)}")
    elif item.source == "mature":
        rating, allowed = details.get("rating"), details.get("allowed")
        where = f"<#{details['channel']}>" if details.get("channel") else "its channel"
        limit = levels.name(allowed) if allowed else "no mature content"
        lines.append(f"Rated {levels.name(rating)}; {where} allows up to {limit}.")
        if release_channel:
            lines.append(f"Release posts it in <#{release_channel}>.")
        else:
            lines.append("No release channel is set (/settings mature): release by DM only.")
    elif item.reason:
        lines.append(truncate(item.reason, 300))
    return truncate("\n".join(lines), 1024)


def queue_label(item: ReviewItem) -> str:
    """The kind of item in a /mod queue line."""
    if item.kind == "held":
        return "held (AI pre-moderation)" if item.source == "premoderation" else "held"
    if item.kind == "mature":
        return f"mature (rated {levels.name(item.details.get('rating'))})"
    return item.kind


def channel_problem(warning: str | None) -> str | None:
    """Why review items cannot be posted, from the problem the owner was last told of
    (GuildSettings.mod_channel_warning, see ReviewBoard._warn_owner); None when none is."""
    if not warning:
        return None
    kind, _, channel = warning.partition(":")
    return {
        "unset": "no moderation channel is set",
        "access": f"I cannot post in <#{channel}> (my access to it was taken)",
        "gone": f"<#{channel}> was deleted",
        "kind": f"<#{channel}> is not a text channel",
    }.get(kind, "the moderation channel does not take them")
