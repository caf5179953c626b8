"""Copies of a job's result found in a channel. Discord can create a message and still answer
5xx; discord.py then posts it again by itself (500/502/504, any 5xx on a webhook), so the bot's
look before posting again may find a part more than once."""

from __future__ import annotations


def one_per_part(found: dict[int, tuple[int, int]]) -> tuple[list[int], list[int]] | None:
    """From {message id: (part, of)}: (kept, extra) — the oldest copy of each part of the
    latest split, in part order, and every other copy — or None when a part is missing."""
    total = max(of for _, of in found.values())
    kept: dict[int, int] = {}
    for message_id in sorted(found):  # snowflakes: oldest first, the copy members saw first
        part, of = found[message_id]
        if of == total:
            kept.setdefault(part, message_id)
    if sorted(kept) != list(range(1, total + 1)):
        return None
    chosen = set(kept.values())
    return [kept[part] for part in sorted(kept)], [m for m in found if m not in chosen]
