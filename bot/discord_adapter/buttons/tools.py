"""A result's Upscale and Remove background (on a result with several images, a modal asks
which), and the Confirm / Cancel of such a job above the guild's threshold. Anyone who may use
the bot here may take a posted image further, as with Edit: the job is theirs and they pay."""

from __future__ import annotations

from typing import Any, ClassVar

import discord

from bot.catalog.tools import Tool
from bot.discord_adapter.attachments import image_attachments
from bot.discord_adapter.buttons.base import KeyedButton, bot_of, view_of
from bot.discord_adapter.modals import Modal
from bot.discord_adapter.replies import UserFacingError
from bot.store.jobs import JobRecord

TOKEN = r"[0-9a-f]{16}"
# Discord's limit for a modal's title.
TITLE_MAX = 45


async def _job_here(interaction: discord.Interaction, job_id: str) -> JobRecord:
    job = await bot_of(interaction).services.jobs.job(job_id)
    if job is None or job.guild_id != interaction.guild_id:
        raise UserFacingError("I cannot find that job here any more.")
    return job


class ToolButton(KeyedButton):
    TOOL: ClassVar[Tool]

    async def act(self, interaction: discord.Interaction) -> None:
        job = await _job_here(interaction, self.key)
        message = interaction.message
        images = image_attachments(message) if message is not None else []
        if message is None or not images:
            raise UserFacingError("This message has no image left to work on.")
        if len(images) > 1:
            await interaction.response.send_modal(WhichImage(self.TOOL, job.id, images, message.id))
            return
        await bot_of(interaction).tools.begin(
            interaction, self.TOOL, job, images[0], 0, reply_to=message.id
        )


class UpscaleButton(ToolButton, prefix="res:upscale"):
    TOOL, LABEL = Tool.UPSCALE, Tool.UPSCALE.label


class RemoveBackgroundButton(ToolButton, prefix="res:cutout"):
    TOOL, LABEL = Tool.REMOVE_BACKGROUND, Tool.REMOVE_BACKGROUND.label


IMAGE_TOOL_BUTTONS: dict[Tool, type[ToolButton]] = {
    Tool.UPSCALE: UpscaleButton,
    Tool.REMOVE_BACKGROUND: RemoveBackgroundButton,
}


class WhichImage(Modal):
    """Which of a result's images to upscale (or cut out)."""

    def __init__(
        self, tool: Tool, job_id: str, images: list[discord.Attachment], message_id: int
    ) -> None:
        super().__init__(title=f"{tool.label}: which image?"[:TITLE_MAX], timeout=600)
        self.tool, self.job_id, self.images, self.message_id = tool, job_id, images, message_id
        self.which: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=f"Which image? (1-{len(images)})",
            custom_id="which",
            default="1",
            max_length=2,
        )
        self.add_item(self.which)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text = self.which.value.strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= len(self.images):
            raise UserFacingError(
                f"**image**: choose a number from 1 to {len(self.images)}. Nothing was charged."
            )
        index = int(text) - 1
        job = await _job_here(interaction, self.job_id)
        await bot_of(interaction).tools.begin(
            interaction, self.tool, job, self.images[index], index, reply_to=self.message_id
        )


class ToolConfirmButton(KeyedButton, prefix="tool:yes", key=TOKEN):
    LABEL = "Confirm"
    STYLE = discord.ButtonStyle.success

    async def act(self, interaction: discord.Interaction) -> None:
        await bot_of(interaction).tools.answer(interaction, self.key, yes=True)


class ToolDeclineButton(KeyedButton, prefix="tool:no", key=TOKEN):
    LABEL = "Cancel"

    async def act(self, interaction: discord.Interaction) -> None:
        await bot_of(interaction).tools.answer(interaction, self.key, yes=False)


TOOL_BUTTONS = (UpscaleButton, RemoveBackgroundButton, ToolConfirmButton, ToolDeclineButton)


def tool_confirm_view(token: str) -> discord.ui.View:
    view = view_of(ToolConfirmButton(token), ToolDeclineButton(token))
    assert view is not None
    return view
