"""Shared steps of the safety tests: channels with and without Discord's age restriction, a
result's private notice, and what a member can read anywhere."""

from __future__ import annotations

from typing import Any

from tests.discord.harness import World, is_ephemeral, text_of
from tests.fakes import InteractionHandle


def nsfw_channel(w: World, name: str = "after-dark") -> int:
    return w.fake.add_channel(w.guild, name, nsfw=True)


async def private_note(w: World, handle: InteractionHandle, words: str, timeout: float = 10) -> str:
    """The member's private follow-up that contains `words` (ephemeral, on their command)."""

    def find() -> str | None:
        for message in handle.followups:
            if is_ephemeral(message) and words in text_of(message):
                return text_of(message)
        return None

    return await w.fake.wait_for(find, timeout=timeout, what=f"a private note {words!r}")


def seen_by_member(w: World, handle: InteractionHandle, channels: list[int]) -> str:
    """Everything the member can read: the channels, their DMs, their command's answers."""
    texts: list[dict[str, Any]] = []
    for channel in channels:
        texts += w.fake.channel_messages(channel)
    texts += w.fake.dm_messages(w.member)
    texts += handle.followups
    if handle.original_message is not None:
        texts.append(handle.original_message)
    return "\n".join(text_of(m) for m in texts)
