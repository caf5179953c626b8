"""After a prompt enhancement: Use enhanced, Keep mine, or Cancel. Only the member who asked
may choose, once (the choice is recorded); the image job is admitted only then."""

from __future__ import annotations

from typing import ClassVar

import discord

from bot.discord_adapter.buttons.base import KeyedButton, bot_of, view_of
from bot.store.choices import Choice


class ChoiceButton(KeyedButton):
    CHOICE: ClassVar[Choice]

    async def act(self, interaction: discord.Interaction) -> None:
        await bot_of(interaction).enhance.choose(interaction, self.key, self.CHOICE)


class UseEnhancedButton(ChoiceButton, prefix="enh:use"):
    CHOICE, LABEL, STYLE = Choice.ENHANCED, "Use enhanced", discord.ButtonStyle.primary


class KeepMineButton(ChoiceButton, prefix="enh:keep"):
    CHOICE, LABEL = Choice.MINE, "Keep mine"


class DropButton(ChoiceButton, prefix="enh:drop"):
    CHOICE, LABEL = Choice.CANCEL, "Cancel"


ENHANCE_BUTTONS = (UseEnhancedButton, KeepMineButton, DropButton)


def choice_view(job_id: str) -> discord.ui.View:
    view = view_of(*(button(job_id) for button in ENHANCE_BUTTONS))
    assert view is not None
    return view
