"""Persistent buttons: each class owns its custom_id (what it acts on is in it), its label and
its style, and reads everything else from the database — so a click works after a restart.
Errors from any of them take the one error path."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Self

import discord

from bot.discord_adapter.replies import report_error

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

# Base classes are never registered: their template matches nothing.
NEVER = r"(?!)"
JOB = r"j[0-9a-f]+"


def bot_of(interaction: discord.Interaction) -> ImageBot:
    return interaction.client  # type: ignore[return-value]


class PersistentButton(discord.ui.DynamicItem[discord.ui.Button], template=NEVER):
    LABEL: ClassVar[str]
    STYLE: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def button(self, custom_id: str) -> discord.ui.Button:
        return discord.ui.Button(label=self.LABEL, style=self.STYLE, custom_id=custom_id)

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            await self.act(interaction)
        except Exception as error:
            await report_error(interaction, error)

    async def act(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


class KeyedButton(PersistentButton, template=NEVER):
    """A button about one thing named in its custom_id: `{prefix}:{key}`."""

    PREFIX: ClassVar[str]

    def __init_subclass__(cls, *, prefix: str = "", key: str = JOB, **kwargs: Any) -> None:
        if prefix:
            cls.PREFIX = prefix
            kwargs["template"] = rf"{re.escape(prefix)}:(?P<key>{key})"
        else:  # an intermediate base class, never registered
            kwargs.setdefault("template", NEVER)
        super().__init_subclass__(**kwargs)

    def __init__(self, key: str | int) -> None:
        self.key = str(key)
        super().__init__(self.button(f"{self.PREFIX}:{self.key}"))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Self:
        return cls(match["key"])


def view_of(*buttons: discord.ui.Item[Any]) -> discord.ui.View | None:
    """A view to send with a message; the registered DynamicItems answer the clicks, so it is
    stopped once sent."""
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view
