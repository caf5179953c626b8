"""A cheaper variant offered after a refusal for lack of Buzz: one button per offer, its label
carrying the price ("medium · 78 Buzz"). The offer itself is kept by the flow (offers.py) for
ten minutes, like a pending confirmation: a click after that says so, and nothing is charged."""

from __future__ import annotations

import discord

from bot.discord_adapter.buttons.base import KeyedButton, bot_of

OFFER = r"[0-9a-f]{16}-[0-9]"
LABEL_MAX = 80


class OfferButton(KeyedButton, prefix="offer", key=OFFER):
    LABEL = "Offer"
    STYLE = discord.ButtonStyle.primary

    def __init__(self, key: str, label: str | None = None) -> None:
        self._label = (label or self.LABEL)[:LABEL_MAX]
        super().__init__(key)

    def button(self, custom_id: str) -> discord.ui.Button:
        return discord.ui.Button(label=self._label, style=self.STYLE, custom_id=custom_id)

    async def act(self, interaction: discord.Interaction) -> None:
        await bot_of(interaction).offers.take(interaction, self.key)
