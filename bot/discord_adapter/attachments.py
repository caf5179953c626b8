"""Discord's attachments as the core's AttachmentInfo, and the images on a message."""

from __future__ import annotations

import discord

from bot.media.limits import KINDS, AttachmentInfo

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def attachment_info(
    option: str, attachment: discord.Attachment, *, own: bool = False
) -> AttachmentInfo:
    """`own`: the attachment is on the bot's own message (a result it posted)."""
    return AttachmentInfo(
        option=option,
        url=attachment.url,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        width=attachment.width,
        height=attachment.height,
        own=own,
    )


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    found = []
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0]
        if kind in IMAGE_TYPES or attachment.filename.lower().endswith(IMAGE_EXTENSIONS):
            found.append(attachment)
    return found


def no_image_text(message: discord.Message) -> str:
    """Why a message offers nothing to edit: an image of a type the models do not take (a
    HEIC photo, a BMP scan) is named with the types that are, not called "no image"."""
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0].strip()
        if kind.startswith("image/") or attachment.width:
            extension = attachment.filename.rpartition(".")[2] if "." in attachment.filename else ""
            shown = (kind.removeprefix("image/") or extension).upper() or "of another type"
            return (
                f"**image**: {attachment.filename} is {shown}; only {KINDS[2:]} images "
                "can be edited. Nothing was charged."
            )
    return "That message has no image attached to edit."
