"""Buttons on a review item in the moderation channel, one class per decision. Every click is
checked at runtime: only moderators (Manage Messages or the moderator role) may decide."""

from __future__ import annotations

from typing import ClassVar

import discord

from bot.discord_adapter.access import require_moderator
from bot.discord_adapter.buttons.base import KeyedButton, bot_of
from bot.discord_adapter.decisions import decide
from bot.discord_adapter.modals import BanModal
from bot.review import Action
from bot.store.db import MAX_INTEGER

ITEM = r"[0-9]+"


class ReviewButton(KeyedButton, key=ITEM):
    ACTION: ClassVar[Action]

    @property
    def item_id(self) -> int:
        """The review item's id; 0 (no item has it) for a crafted one beyond what SQLite holds,
        so the click is answered like any unknown item, after the same permission checks."""
        number = int(self.key)
        return number if number <= MAX_INTEGER else 0

    async def act(self, interaction: discord.Interaction) -> None:
        await decide(interaction, self.item_id, self.ACTION)


class ApproveButton(ReviewButton, prefix="rev:approve", key=ITEM):
    ACTION, LABEL, STYLE = Action.APPROVE, "Approve", discord.ButtonStyle.success


class RejectButton(ReviewButton, prefix="rev:reject", key=ITEM):
    ACTION, LABEL, STYLE = Action.REJECT, "Reject", discord.ButtonStyle.danger


class RefundButton(ReviewButton, prefix="rev:refund", key=ITEM):
    ACTION, LABEL, STYLE = Action.REFUND, "Refund", discord.ButtonStyle.success


class DismissButton(ReviewButton, prefix="rev:dismiss", key=ITEM):
    ACTION, LABEL = Action.DISMISS, "Dismiss"


class ReleaseButton(ReviewButton, prefix="rev:release", key=ITEM):
    """A result kept from its channel, posted in the guild's age-restricted release channel."""

    ACTION, LABEL, STYLE = Action.RELEASE, "Release", discord.ButtonStyle.primary


class SendDmButton(ReviewButton, prefix="rev:dm", key=ITEM):
    """A result kept from its channel, sent to the member by DM."""

    ACTION, LABEL = Action.SEND_DM, "Send by DM"


class StrikeButton(ReviewButton, prefix="rev:strike", key=ITEM):
    ACTION, LABEL = Action.STRIKE, "Strike"


class BanButton(ReviewButton, prefix="rev:ban", key=ITEM):
    ACTION, LABEL, STYLE = Action.BAN, "Ban", discord.ButtonStyle.danger

    async def act(self, interaction: discord.Interaction) -> None:
        # Days and a reason first; the decision is made when the modal comes back.
        await require_moderator(interaction, bot_of(interaction).services.guilds)
        await interaction.response.send_modal(BanModal(self.item_id))


REVIEW_BUTTONS: dict[Action, type[ReviewButton]] = {
    b.ACTION: b
    for b in (
        ApproveButton,
        RejectButton,
        RefundButton,
        DismissButton,
        ReleaseButton,
        SendDmButton,
        StrikeButton,
        BanButton,
    )
}
