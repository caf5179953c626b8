"""Attachments in: refused from Discord's metadata where possible, then downloaded only from
Discord's CDN, size-capped before and while reading."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from bot import net
from bot.catalog.capabilities import capability
from bot.catalog.names import Model, Operation
from bot.media.limits import (
    ALLOWED_EXTENSIONS,
    ALLOWED_TYPES,
    KINDS,
    AttachmentInfo,
    MediaError,
    MediaLimits,
    check_pixels,
    human_size,
    too_many_bytes,
)

MAX_REDIRECTS = 3
# An attachment's own path (a message's, or an interaction's ephemeral upload): the CDN's hosts
# also serve avatars, emojis and, through the media proxy's /external/, any site's files.
ATTACHMENT_PATH = re.compile(r"/(?:ephemeral-)?attachments/[0-9]+/[0-9]+/(?!\.\.?$)[^/]+")


def check_declared(info: AttachmentInfo, limits: MediaLimits) -> None:
    """Refuse an attachment from Discord's metadata alone: wrong type, too many bytes or pixels."""
    kind = _content_type(info.content_type)
    extension = _extension(info.filename)
    if kind and kind not in ALLOWED_TYPES:
        raise MediaError(info.option, f"{info.option} must be {KINDS}; {info.filename} is {kind}")
    if extension and extension not in ALLOWED_EXTENSIONS:
        raise MediaError(
            info.option, f"{info.option} must be {KINDS}; {info.filename} is a .{extension} file"
        )
    if info.size > limits.bytes_for(info):
        raise too_many_bytes(info.option, info.size, limits.bytes_for(info))
    if not (info.width and info.height):
        # Discord reads every image it stores: no dimensions means an empty file, text, an
        # SVG or something damaged, whatever its name says.
        raise MediaError(
            info.option, f"{info.option} is not a readable {KINDS[2:]}: {info.filename} is not"
        )
    check_pixels(info.option, info.width, info.height, limits.max_pixels)


def _content_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _extension(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    return extension.lower() if dot and stem else ""


def check_declared_for(model: Model, infos: Sequence[AttachmentInfo]) -> None:
    """Model rules Discord's metadata already answers, checked before anything is held."""
    can = capability(model, Operation.EDIT)
    if can is None or not can.square_source:
        return
    for info in infos:
        if info.option == "image" and info.width and info.height:
            require_square(info.width, info.height)


def require_square(width: int, height: int, model: Model = Model.DALL_E_2) -> None:
    if width != height:
        raise MediaError(
            "image",
            f"{model} edits need a square image; yours is {width}x{height}: "
            "crop it or use gpt-image-1",
        )


async def download(http: httpx.AsyncClient, info: AttachmentInfo, limits: MediaLimits) -> bytes:
    """Fetch an attachment from an allowed host, refusing it as soon as it passes the byte cap."""
    check_declared(info, limits)
    url = info.url
    try:
        async with asyncio.timeout(limits.download_timeout):
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(info, url, limits)
                response = await http.send(_request(http, url, limits), stream=True)
                try:
                    if response.is_redirect:
                        url = _redirect_target(info, url, response)
                        continue
                    return await _read_body(info, response, limits.bytes_for(info))
                finally:
                    await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise MediaError(info.option, f"downloading {info.filename} timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise MediaError(
            info.option, f"could not download {info.filename}: {_download_fault(exc)}"
        ) from None
    raise MediaError(info.option, f"could not download {info.filename}: too many redirects")


def _download_fault(exc: Exception) -> str:
    """What went wrong, in the member's words (not an exception's class name)."""
    if isinstance(exc, httpx.ConnectError):
        return "Discord's file server could not be reached; try again in a moment"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "the download was cut off; try again in a moment"
    return "the download failed; try again in a moment"


def _check_url(info: AttachmentInfo, url: str, limits: MediaLimits) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not _host_allowed(host, limits.allowed_hosts):
        raise MediaError(
            info.option, f"{info.option} must be a Discord attachment; {host or 'that'} is not"
        )
    if parts.scheme != "https" and not (parts.scheme == "http" and net.is_loopback(host)):
        raise MediaError(info.option, f"{info.option} must be downloaded over https")
    if not ATTACHMENT_PATH.fullmatch(parts.path):
        raise MediaError(
            info.option, f"{info.option} must be a Discord attachment; that link is not one"
        )


def _host_allowed(host: str, patterns: Sequence[str]) -> bool:
    for pattern in (p.lower() for p in patterns):
        if pattern.startswith("*."):  # any subdomain, not the bare domain
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def _request(http: httpx.AsyncClient, url: str, limits: MediaLimits) -> httpx.Request:
    # Identity encoding: the byte cap must count what we store, not what a gzip stream expands to.
    request = http.build_request(
        "GET", url, headers={"Accept-Encoding": "identity"}, timeout=limits.download_timeout
    )
    # The client may be shared with an API that has a token: it must not reach the CDN.
    for header in ("Authorization", "Cookie"):
        request.headers.pop(header, None)
    return request


def _redirect_target(info: AttachmentInfo, url: str, response: httpx.Response) -> str:
    location = response.headers.get("location")
    if not location:
        raise MediaError(info.option, f"could not download {info.filename}: a broken redirect")
    target = str(response.url.join(location))
    if urlsplit(target).hostname != urlsplit(url).hostname:
        raise MediaError(
            info.option, f"could not download {info.filename}: it redirects to another host"
        )
    return target


async def _read_body(info: AttachmentInfo, response: httpx.Response, cap: int) -> bytes:
    if response.status_code != 200:
        raise MediaError(
            info.option,
            f"could not download {info.filename}: the server answered {response.status_code}",
        )
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise MediaError(
            info.option, f"could not download {info.filename}: it came {encoding}-compressed"
        )
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise too_many_bytes(info.option, int(declared), cap)
    # Content-Encoding is identity (checked above), so these are the bytes on the wire.
    data, over = await net.read_capped(response.aiter_bytes(), cap)
    if over:  # stopped there: the rest is never read
        raise MediaError(info.option, f"{info.option} is over the {human_size(cap)} limit")
    return data
