"""/imagine and /create <model>: text to image. Discord enforces the choices, ranges and
required options; the catalog checks the rest and names the option when it refuses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.catalog import CatalogError, Model, Operation, RequestOptions
from bot.catalog.capabilities import can_edit
from bot.catalog.names import parse_model
from bot.catalog.sizes import GPT2_PRESETS, parse_size
from bot.discord_adapter.attachments import attachment_info
from bot.discord_adapter.interaction import Interaction
from bot.discord_adapter.replies import UserFacingError
from bot.engine.requests import JobRequest, Refusal, Requester

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot


def choices(*values: str) -> list[Choice[str]]:
    return [Choice(name=v, value=v) for v in values]


QUALITY_LMH = choices("low", "medium", "high")
QUALITY_GPT1 = choices("auto", "high", "medium", "low")
QUALITY_DALLE3 = choices("auto", "hd", "standard")
GPT_SIZES = choices("1024x1024", "1536x1024", "1024x1536")
DALLE3_SIZES = choices("1024x1024", "1792x1024", "1024x1792")
DALLE2_SIZES = choices("256x256", "512x512", "1024x1024")
FORMATS = choices("jpeg", "png", "webp")
BACKGROUNDS = choices("auto", "transparent", "opaque")
STYLES = choices("natural", "vivid")
# Discord's own limit for a text option; the model may allow more (gpt image: 32 000).
DISCORD_TEXT_MAX = 6000

PROMPT_HELP = "What to draw, in plain words"
ENHANCE_HELP = "Improve the prompt first (a little Buzz); you then choose which prompt to use"
SIZE2_HELP = "WIDTHxHEIGHT, both 256-3840 and multiples of 16 (presets offered)"
FORMAT_HELP = "jpeg, png or webp"


def options(prompt: str, **given: Choice[str] | str | int | None) -> RequestOptions:
    """The member's options from slash values (choices become their values)."""
    return RequestOptions(
        prompt=prompt,
        **{k: v.value if isinstance(v, Choice) else v for k, v in given.items()},  # type: ignore[arg-type]
    )


async def gpt2_size_choices(interaction: Interaction, current: str) -> list[Choice[str]]:
    """Presets (square, portrait, landscape, 1080p, 1440p, 4K) with their prices on the lane in
    use; whatever valid size the member is typing comes first. A size the lane refuses (or
    cannot price) is not offered."""
    quality = getattr(interaction.namespace, "quality", None) or "high"
    quantity = getattr(interaction.namespace, "quantity", None) or 1
    who = Requester(interaction.guild_id or 0, interaction.channel_id or 0, interaction.user.id)

    def label(name: str, width: int, height: int) -> Choice[str] | None:
        size = f"{width}x{height}"
        options = RequestOptions(prompt="size", size=size, quality=quality, quantity=quantity)
        try:
            request = interaction.client.engine.validate(
                JobRequest(who, Model.GPT_IMAGE_2, Operation.CREATE, options)
            )
        except Refusal:
            return None
        return Choice(name=f"{name} {size} ({request.buzz} Buzz)", value=size)

    typed = parse_size(current) if current else None
    found: list[Choice[str]] = []
    if typed and (custom := label("custom", *typed)) is not None:
        found.append(custom)
    needle = current.strip().lower()
    for preset in GPT2_PRESETS:
        wanted = not needle or needle in preset.name.lower() or needle in preset.size
        if not wanted or any(c.value == preset.size for c in found):
            continue
        if (choice := label(preset.name, preset.width, preset.height)) is not None:
            found.append(choice)
    return found[:25]


class Create(commands.Cog):
    create = app_commands.Group(
        name="create", description="Create images with an OpenAI model", guild_only=True
    )

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    async def _go(
        self,
        interaction: Interaction,
        model: Model,
        options: RequestOptions,
        enhance: bool | None = None,
    ) -> None:
        await self.bot.flow.begin(
            interaction, model, Operation.CREATE, options, enhance=bool(enhance)
        )

    @app_commands.command(
        name="imagine",
        description="Make an image with the server's model; attach an image to edit it",
    )
    @app_commands.guild_only()
    @app_commands.describe(
        prompt=PROMPT_HELP,
        image="An image to edit instead of starting from nothing",
        mask="Where to change the image: transparent areas, or white on black",
        enhance=ENHANCE_HELP,
    )
    async def imagine(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, DISCORD_TEXT_MAX],
        image: discord.Attachment | None = None,
        mask: discord.Attachment | None = None,
        enhance: bool | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        settings = await self.bot.services.guilds.settings(interaction.guild_id)
        try:
            model = parse_model(settings.default_model)
        except CatalogError:
            model = Model.GPT_IMAGE_2
        options = RequestOptions(prompt=prompt)
        if image is None:
            if mask is not None:
                raise UserFacingError("**mask**: a mask needs an image to edit; attach one.")
            await self._go(interaction, model, options, enhance)
            return
        if not can_edit(model):
            raise UserFacingError(
                f"**image**: this server's model, {model}, cannot edit images: leave the image "
                "out, or use /edit gpt-image-2. Nothing was charged."
            )
        attachments = [attachment_info("image", image)]
        if mask is not None:
            attachments.append(attachment_info("mask", mask))
        await self.bot.flow.begin(
            interaction, model, Operation.EDIT, options, attachments, enhance=bool(enhance)
        )

    @create.command(name="gpt-image-2", description="gpt-image-2: any size, the latest model")
    @app_commands.describe(
        prompt=PROMPT_HELP, size=SIZE2_HELP, format=FORMAT_HELP, enhance=ENHANCE_HELP
    )
    @app_commands.choices(quality=QUALITY_LMH, format=FORMATS)
    @app_commands.autocomplete(size=gpt2_size_choices)
    async def gpt_image_2(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, DISCORD_TEXT_MAX],
        size: str | None = None,
        quality: Choice[str] | None = None,
        quantity: Range[int, 1, 4] | None = None,
        format: Choice[str] | None = None,
        enhance: bool | None = None,
    ) -> None:
        await self._go(
            interaction,
            Model.GPT_IMAGE_2,
            options(prompt, size=size, quality=quality, quantity=quantity, format=format),
            enhance,
        )

    @create.command(
        name="gpt-image-1-5", description="gpt-image-1.5: fixed sizes, background control"
    )
    @app_commands.describe(prompt=PROMPT_HELP, format=FORMAT_HELP, enhance=ENHANCE_HELP)
    @app_commands.choices(
        size=GPT_SIZES, quality=QUALITY_LMH, background=BACKGROUNDS, format=FORMATS
    )
    async def gpt_image_1_5(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, DISCORD_TEXT_MAX],
        size: Choice[str] | None = None,
        quality: Choice[str] | None = None,
        quantity: Range[int, 1, 4] | None = None,
        background: Choice[str] | None = None,
        format: Choice[str] | None = None,
        enhance: bool | None = None,
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
                format=format,
            ),
            enhance,
        )

    @create.command(
        name="gpt-image-1", description="gpt-image-1: up to 10 images, transparent backgrounds"
    )
    @app_commands.describe(prompt=PROMPT_HELP, format=FORMAT_HELP, enhance=ENHANCE_HELP)
    @app_commands.choices(
        size=GPT_SIZES, quality=QUALITY_GPT1, background=BACKGROUNDS, format=FORMATS
    )
    async def gpt_image_1(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, DISCORD_TEXT_MAX],
        size: Choice[str] | None = None,
        quality: Choice[str] | None = None,
        quantity: Range[int, 1, 10] | None = None,
        background: Choice[str] | None = None,
        format: Choice[str] | None = None,
        enhance: bool | None = None,
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
            enhance,
        )

    @create.command(name="dall-e-3", description="dall-e-3: natural or vivid style")
    @app_commands.describe(
        prompt="What to draw (dall-e-3 reads at most 4000 characters)",
        format=FORMAT_HELP,
        enhance=ENHANCE_HELP,
    )
    @app_commands.choices(size=DALLE3_SIZES, style=STYLES, quality=QUALITY_DALLE3, format=FORMATS)
    async def dall_e_3(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, 4000],
        size: Choice[str] | None = None,
        style: Choice[str] | None = None,
        quality: Choice[str] | None = None,
        format: Choice[str] | None = None,
        enhance: bool | None = None,
    ) -> None:
        await self._go(
            interaction,
            Model.DALL_E_3,
            options(prompt, size=size, style=style, quality=quality, format=format),
            enhance,
        )

    @create.command(name="dall-e-2", description="dall-e-2: legacy, square images only")
    @app_commands.describe(
        prompt="What to draw (dall-e-2 reads at most 1000 characters)",
        format=FORMAT_HELP,
        enhance=ENHANCE_HELP,
    )
    @app_commands.choices(size=DALLE2_SIZES, format=FORMATS)
    async def dall_e_2(
        self,
        interaction: Interaction,
        prompt: Range[str, 1, 1000],
        size: Choice[str] | None = None,
        quantity: Range[int, 1, 10] | None = None,
        format: Choice[str] | None = None,
        enhance: bool | None = None,
    ) -> None:
        await self._go(
            interaction,
            Model.DALL_E_2,
            options(prompt, size=size, quantity=quantity, format=format),
            enhance,
        )


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Create(bot))
