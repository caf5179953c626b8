"""A member's Confirm / Cancel on a costly request (the pending request lives in the flow)."""

from __future__ import annotations

import discord

from bot.discord_adapter.buttons.base import KeyedButton, bot_of, view_of

TOKEN = r"[0-9a-f]{16}"


class ConfirmButton(KeyedButton, prefix="confirm:yes", key=TOKEN):
    LABEL = "Confirm"
    STYLE = discord.ButtonStyle.success

    async def act(self, interaction: discord.Interaction) -> None:
        await bot_of(interaction).flow.answer(interaction, self.key, yes=True)


class DeclineButton(KeyedButton, prefix="confirm:no", key=TOKEN):
    LABEL = "Cancel"

    async def act(self, interaction: discord.Interaction) -> None:
        await bot_of(interaction).flow.answer(interaction, self.key, yes=False)


def confirm_view(token: str) -> discord.ui.View:
    view = view_of(ConfirmButton(token), DeclineButton(token))
    assert view is not None
    return view
