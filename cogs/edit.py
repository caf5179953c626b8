"""/edit <model> and the "Edit image" message menu: attachments become sources and masks.

A mask marks where to change the image: either transparent areas (alpha 0 = edit), or a
drawing without transparency where white/light = change and black/dark = keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.catalog import Model, Operation, RequestOptions
from bot.discord_adapter.attachments import attachment_info, image_attachments, no_image_text
from bot.discord_adapter.interaction import Interaction
from bot.discord_adapter.modals import EditPrompt
from bot.discord_adapter.replies import UserFacingError
from bot.media.limits import AttachmentInfo
from cogs.create import (
    BACKGROUNDS,
    DALLE2_SIZES,
    DISCORD_TEXT_MAX,
    FORMAT_HELP,
    FORMATS,
    GPT_SIZES,
    QUALITY_GPT1,
    QUALITY_LMH,
    SIZE2_HELP,
    choices,
    gpt2_size_choices,
    options,
)

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

MASK_HELP = "Where to change: transparent areas, or white (change) on black (keep)"
EDIT_PROMPT = "What to change, in plain words"


def sources(**attachments: discord.Attachment | None) -> list[AttachmentInfo]:
    return [attachment_info(name, a) for name, a in attachments.items() if a is not None]


class Edit(commands.Cog):
    edit = app_commands.Group(
        name="edit", description="Edit your images with an OpenAI model", guild_only=True
    )

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_image)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def edit_image(self, interaction: Interaction, message: discord.Message) -> None:
        images = image_attachments(message)
        if not images:
            raise UserFacingError(no_image_text(message))
        assert interaction.guild_id is not None
        settings = await self.bot.services.guilds.settings(interaction.guild_id)
        own = self.bot.user is not None and message.author.id == self.bot.user.id
        await interaction.response.send_modal(EditPrompt(images, settings.editing_model(), own=own))

    async def _go(
        self,
        interaction: Interaction,
        model: Model,
        options: RequestOptions,
        attachments: list[AttachmentInfo],
    ) -> None:
        await self.bot.flow.begin(interaction, model, Operation.EDIT, options, attachments)

    @edit.command(name="gpt-image-2", description="Edit with gpt-image-2 (mask supported)")
    @app_commands.describe(
        prompt=EDIT_PROMPT,
        image="The image to edit",
        mask=MASK_HELP,
        size=SIZE2_HELP + "; leave empty to keep the image's size",
        format=FORMAT_HELP,
    )
    @app_commands.choices(quality=QUALITY_LMH, format=FORMATS)
    @app_commands.autocomplete(size=gpt2_size_choices)
    async def gpt_image_2(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, DISCORD_TEXT_MAX],
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        mask: discord.Attachment | None = None,
        size: str | None = None,
        quality: Choice[str] | None = None,
        quantity: Range[int, 1, 4] | None = None,
        format: Choice[str] | None = None,
    ) -> None:
        await self._go(
            interaction,
            Model.GPT_IMAGE_2,
            options(prompt, size=size, quality=quality, quantity=quantity, format=format),
            sources(image=image, image2=image2, image3=image3, image4=image4, mask=mask),
        )

    @edit.command(name="gpt-image-1-5", description="Edit with gpt-image-1.5 (no mask)")
    @app_commands.describe(
        prompt=EDIT_PROMPT,
        image="The image to edit",
        fidelity="How closely to keep details of the input images",
        format=FORMAT_HELP,
    )
    @app_commands.choices(
        size=choices("auto", *(c.value for c in GPT_SIZES)),
        quality=QUALITY_LMH,
        background=BACKGROUNDS,
        fidelity=choices("low", "high"),
        format=FORMATS,
    )
    async def gpt_image_1_5(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, DISCORD_TEXT_MAX],
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        size: Choice[str] | None = None,
        quality: Choice[str] | None = None,
        quantity: Range[int, 1, 4] | None = None,
        background: Choice[str] | None = None,
        fidelity: Choice[str] | None = None,
        format: Choice[str] | None = None,
    ) -> None:
        await self._go(
            interaction,
            Model.GPT_IMAGE_1_5,
            options(
                prompt,
                size=size,
                quality=quality,
                quantity=quantity,
                background=background,
                fidelity=fidelity,
                format=format,
            ),
            sources(image=image, image2=image2, image3=image3, image4=image4),
        )

    @edit.command(name="gpt-image-1", description="Edit with gpt-image-1 (mask supported)")
    @app_commands.describe(
        prompt=EDIT_PROMPT, image="The image to edit", mask=MASK_HELP, format=FORMAT_HELP
    )
    @app_commands.choices(
        size=GPT_SIZES, quality=QUALITY_GPT1, background=BACKGROUNDS, format=FORMATS
    )
    async def gpt_image_1(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, DISCORD_TEXT_MAX],
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        mask: discord.Attachment | None = None,
        size: Choice[str] | None = None,
        quality: Choice[str] | None = None,
        quantity: Range[int, 1, 10] | None = None,
        background: Choice[str] | None = None,
        format: Choice[str] | None = None,
    ) -> None:
        await self._go(
            interaction,
            Model.GPT_IMAGE_1,
            options(
                prompt,
                size=size,
                quality=quality,
                quantity=quantity,
                background=background,
                format=format,
            ),
            sources(image=image, image2=image2, image3=image3, image4=image4, mask=mask),
        )

    @edit.command(
        name="dall-e-2", description="Edit with dall-e-2 (one square image, mask supported)"
    )
    @app_commands.describe(
        prompt="What to change (dall-e-2 reads at most 1000 characters)",
        image="A square image to edit",
        mask=MASK_HELP,
        format=FORMAT_HELP,
    )
    @app_commands.choices(size=DALLE2_SIZES, format=FORMATS)
    async def dall_e_2(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, 1000],
        image: discord.Attachment,
        mask: discord.Attachment | None = None,
        size: Choice[str] | None = None,
        quantity: Range[int, 1, 10] | None = None,
        format: Choice[str] | None = None,
    ) -> None:
        await self._go(
            interaction,
            Model.DALL_E_2,
            options(prompt, size=size, quantity=quantity, format=format),
            sources(image=image, mask=mask),
        )


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Edit(bot))
