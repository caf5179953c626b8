"""The modals: what to change in an image, why to ban, and a member's appeal. One base class
sends every error through the one error path."""

from __future__ import annotations

from typing import Any

import discord

from bot.catalog import Model, Operation, RequestOptions
from bot.discord_adapter.attachments import attachment_info
from bot.discord_adapter.buttons.base import bot_of
from bot.discord_adapter.decisions import decide
from bot.discord_adapter.interaction import think
from bot.discord_adapter.replies import UserFacingError, reply, report_error
from bot.review import Action
from bot.store.sanctions import MAX_BAN_DAYS

FORM_GONE = (
    "This form is no longer open (the bot restarted, or it waited too long); open it again. "
    "Nothing was charged."
)


def modal_open(client: discord.Client, interaction: discord.Interaction) -> bool:
    """Whether a submitted form is one this process opened and still waits for. discord.py
    drops any other unanswered (the member reads "This interaction failed"); it keeps its
    open forms in its view store, which has no public accessor: unknown counts as open."""
    data: Any = interaction.data or {}
    store = getattr(getattr(client, "_connection", None), "_view_store", None)
    modals = getattr(store, "_modals", None)
    return not isinstance(modals, dict) or data.get("custom_id") in modals


class Modal(discord.ui.Modal):
    async def on_error(  # type: ignore[override]  # discord.py's Modal takes no item
        self, interaction: discord.Interaction, error: Exception
    ) -> None:
        await report_error(interaction, error)


class EditPrompt(Modal):
    """Asks what to change; with several images, also which one."""

    def __init__(
        self,
        images: list[discord.Attachment],
        model: Model,
        parent_job_id: str | None = None,
        *,
        own: bool = False,
    ) -> None:
        """`own`: the images are on the bot's own message (a result it posted)."""
        super().__init__(title="Edit image", timeout=600)
        self.images, self.model, self.parent, self.own = images, model, parent_job_id, own
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="What should change?",
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            max_length=4000,
            placeholder="e.g. make it a winter scene with snow falling",
        )
        self.add_item(self.prompt)
        self.which: discord.ui.TextInput[Any] | None = None
        if len(images) > 1:
            self.which = discord.ui.TextInput(
                label=f"Which image? (1-{len(images)})",
                custom_id="which",
                default="1",
                max_length=2,
            )
            self.add_item(self.which)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        index = 0
        if self.which is not None:
            text = self.which.value.strip()
            # isascii: "²" or "①" pass isdigit() but are not numbers int() reads.
            if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= len(self.images):
                raise UserFacingError(
                    f"**image**: choose a number from 1 to {len(self.images)}. Nothing was charged."
                )
            index = int(text) - 1
        source = attachment_info("image", self.images[index], own=self.own)
        await bot_of(interaction).flow.begin(
            interaction,
            self.model,
            Operation.EDIT,
            RequestOptions(prompt=self.prompt.value),
            [source],
            parent_job_id=self.parent,
        )


class BanModal(Modal, title="Ban from the bot"):
    days: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label=f"Days (1-{MAX_BAN_DAYS}; empty = until unbanned)",
        custom_id="days",
        required=False,
        max_length=4,
    )
    reason: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Reason (the audit log keeps it)", custom_id="reason", required=False, max_length=300
    )

    def __init__(self, item_id: int) -> None:
        super().__init__(timeout=600)
        self.item_id = item_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text = self.days.value.strip()
        # isascii: "²" and other digits str.isdigit() accepts are not numbers int() reads.
        if text and (not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_BAN_DAYS):
            raise UserFacingError(f"**days**: a whole number from 1 to {MAX_BAN_DAYS}, or empty.")
        await decide(
            interaction,
            self.item_id,
            Action.BAN,
            days=int(text) if text else None,
            reason=self.reason.value.strip() or None,
        )


class AppealModal(Modal, title="Appeal to the moderators"):
    note: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="What should the moderators know?",
        custom_id="note",
        style=discord.TextStyle.paragraph,
        max_length=1000,
    )

    def __init__(self, job_id: str, item_id: int) -> None:
        super().__init__(timeout=900)
        self.job_id, self.item_id = job_id, item_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        assert interaction.guild_id is not None
        await think(interaction)
        await bot.review.appeal(
            interaction.guild_id, self.job_id, interaction.user.id, self.note.value
        )
        await bot.board.refresh(self.item_id)
        await reply(
            interaction,
            "Your appeal was added to the review. You will see the "
            "moderators' decision on your request's message.",
        )
