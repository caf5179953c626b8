"""Discord's attachments as the core's AttachmentInfo, and the images on a message."""

from __future__ import annotations

import discord

from bot.media.limits import AttachmentInfo

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def attachment_info(option: str, attachment: discord.Attachment) -> AttachmentInfo:
    return AttachmentInfo(
        option=option,
        url=attachment.url,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        width=attachment.width,
        height=attachment.height,
    )


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    found = []
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0]
        if kind in IMAGE_TYPES or attachment.filename.lower().endswith(IMAGE_EXTENSIONS):
            found.append(attachment)
    return found
