"""A moderator's decision on a review item, from a button or a modal: checked at runtime,
applied once, shown on the item, and told to the moderator."""

from __future__ import annotations

import discord

from bot.discord_adapter.access import is_admin, require_moderator
from bot.discord_adapter.buttons.base import bot_of
from bot.discord_adapter.interaction import think
from bot.discord_adapter.replies import reply
from bot.review import Action, ReleaseUndone
from bot.store.moderation import AlreadyHandled


async def decide(
    interaction: discord.Interaction,
    item_id: int,
    action: Action,
    *,
    days: int | None = None,
    reason: str | None = None,
) -> None:
    bot = bot_of(interaction)
    await require_moderator(interaction, bot.services.guilds)
    assert interaction.guild_id is not None
    # Answer Discord now: the decision, the member's message and the item's edit follow.
    if not interaction.response.is_done():
        await think(interaction)
    try:
        outcome = await bot.review.act(
            interaction.guild_id,
            item_id,
            action,
            interaction.user.id,
            days=days,
            reason=reason,
            actor_is_admin=is_admin(
                interaction, await bot.services.guilds.settings(interaction.guild_id)
            ),
        )
    except (AlreadyHandled, ReleaseUndone):
        # Decided already, perhaps just before a restart that kept its message from being
        # redrawn: redraw it now, so its buttons go and its state shows. A release that
        # could not be posted opened the item again: its buttons come back.
        await bot.board.refresh(item_id)
        raise
    await bot.board.refresh(item_id)
    if outcome.strikes is not None:  # the member's other cards show their strike count
        await bot.board.refresh_member(interaction.guild_id, outcome.job.member_id, but=item_id)
    await reply(interaction, f"Review #{item_id}: {outcome.summary}.")
