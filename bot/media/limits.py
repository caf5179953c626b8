"""What the media code refuses, and how it says so: the limits, the error that names the slash
option, and sizes in the words Discord shows its users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import MediaSettings

MiB = 1024 * 1024
KINDS = "a PNG, JPEG, WebP or GIF"
ALLOWED_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif"})
ALLOWED_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "jpe", "jfif", "webp", "gif"})
# The bot's own posted results are fetched back up to what Discord lets any server upload
# (boost level 3), whatever the cap on members' attachments: the bot posted them.
POSTED_MAX_BYTES = 100 * MiB


@dataclass(frozen=True)
class AttachmentInfo:
    """What Discord tells us about an attachment before we download anything."""

    option: str  # the slash option it came from: "image", "image2", "mask", ...
    url: str
    filename: str
    content_type: str | None
    size: int  # declared bytes
    width: int | None
    height: int | None
    # The bot's own posted result (a tool or an edit of it), not a member's upload.
    own: bool = False


class MediaError(Exception):
    """An attachment we cannot use; `option` names the slash option, `message` says why."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 25 * MiB
    max_pixels: int = 40_000_000
    max_source_bytes: int = 8 * MiB
    allowed_hosts: tuple[str, ...] = ("cdn.discordapp.com", "media.discordapp.net")
    # The whole download, redirects included: a server dripping bytes cannot hold a job forever.
    download_timeout: float = 30.0

    @classmethod
    def from_settings(
        cls, media: MediaSettings, allowed_hosts: tuple[str, ...] | None = None
    ) -> MediaLimits:
        return cls(
            max_bytes=media.max_attachment_bytes,
            max_pixels=media.max_pixels,
            max_source_bytes=media.max_source_bytes,
            allowed_hosts=allowed_hosts if allowed_hosts is not None else cls.allowed_hosts,
        )

    def bytes_for(self, info: AttachmentInfo) -> int:
        """The byte cap for this attachment: the bot's own posts may be as large as it could
        upload them."""
        return max(self.max_bytes, POSTED_MAX_BYTES) if info.own else self.max_bytes


def human_size(n: int) -> str:
    # Binary units under the names Discord shows its users ("25 MB" for 25 MiB).
    if n >= MiB:
        return f"{_number(n / MiB)} MB"
    if n >= 1024:
        return f"{_number(n / 1024)} KB"
    return f"{n} bytes"


def megapixels(pixels: int) -> str:
    return _number(pixels / 1_000_000)


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def check_pixels(option: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MediaError(
            option,
            f"{option} is {width}x{height} ({megapixels(width * height)} megapixels); "
            f"the limit is {megapixels(max_pixels)} megapixels",
        )


def too_many_bytes(option: str, size: int, limit: int) -> MediaError:
    return MediaError(option, f"{option} is {human_size(size)}; the limit is {human_size(limit)}")
