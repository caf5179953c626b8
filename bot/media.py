"""Images in and out: check and download attachments, decode them safely, re-encode them to fit.

Everything here is pure and synchronous except `download`. Decoding and encoding are CPU-bound:
callers run `decode`, `prepare_sources`, `prepare_mask` and `fit_for_upload` in
`asyncio.to_thread`. No function here mutates Pillow's or the warnings module's global state,
because several of them may run at once on different threads.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageOps

from bot.catalog.names import Model
from bot.store.jobs import SourceImage

if TYPE_CHECKING:
    from bot.config import MediaSettings

log = logging.getLogger(__name__)

MiB = 1024 * 1024
KINDS = "a PNG, JPEG, WebP or GIF"
ALLOWED_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif"})
ALLOWED_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "jpe", "jfif", "webp", "gif"})
# Pillow only tries these decoders, whatever the file claims to be (no PSD, TIFF, EPS... parsers
# run on untrusted bytes). A phone's multi-picture JPEG opens as "MPO" through the JPEG decoder.
DECODERS = ("PNG", "JPEG", "WEBP", "GIF")
DECODED_FORMATS = frozenset({*DECODERS, "MPO"})
# OpenAI: dall-e-2 images and masks must be "less than 4MB"; read as decimal to be safe.
DALL_E_2_MAX_BYTES = 4_000_000
MASK_MODELS = frozenset({Model.GPT_IMAGE_2, Model.GPT_IMAGE_1, Model.DALL_E_2})
SOURCE_QUALITIES = (90, 80, 70)
UPLOAD_QUALITIES = (90, 80, 70, 60)
SCALE_STEP = 0.85
MIN_SIDE = 16  # below this an image is useless: give up rather than shrink further
MAX_SIDE = {"PNG": 2**31 - 1, "JPEG": 65_500, "WEBP": 16_383}
MAX_REDIRECTS = 3
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSION = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
FORMAT_NAME = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}


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


@dataclass(frozen=True)
class FittedImage:
    data: bytes
    mime: str
    extension: str  # "png" | "jpg" | "webp" ("gif" only when an unchanged GIF is passed through)
    width: int
    height: int
    note: str | None  # None when unchanged; else what was done, in plain words


# -- before downloading ------------------------------------------------------------------------


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
    if info.size > limits.max_bytes:
        raise _too_many_bytes(info.option, info.size, limits.max_bytes)
    if not (info.width and info.height):
        # Discord reads every image it stores: no dimensions means an empty file, text, an
        # SVG or something damaged, whatever its name says.
        raise MediaError(
            info.option, f"{info.option} is not a readable {KINDS[2:]}: {info.filename} is not"
        )
    _check_pixels(info.option, info.width, info.height, limits.max_pixels)


def _content_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _extension(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    return extension.lower() if dot and stem else ""


def _check_pixels(option: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MediaError(
            option,
            f"{option} is {width}x{height} ({_megapixels(width * height)} megapixels); "
            f"the limit is {_megapixels(max_pixels)} megapixels",
        )


def _too_many_bytes(option: str, size: int, limit: int) -> MediaError:
    return MediaError(option, f"{option} is {_size(size)}; the limit is {_size(limit)}")


def _size(n: int) -> str:
    # Binary units under the names Discord shows its users ("25 MB" for 25 MiB).
    if n >= MiB:
        return f"{_number(n / MiB)} MB"
    if n >= 1024:
        return f"{_number(n / 1024)} KB"
    return f"{n} bytes"


def _megapixels(pixels: int) -> str:
    return _number(pixels / 1_000_000)


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


# -- download ------------------------------------------------------------------------------------


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
                    return await _read_body(info, response, limits.max_bytes)
                finally:
                    await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise MediaError(info.option, f"downloading {info.filename} timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise MediaError(
            info.option, f"could not download {info.filename} ({type(exc).__name__})"
        ) from None
    raise MediaError(info.option, f"could not download {info.filename}: too many redirects")


def _check_url(info: AttachmentInfo, url: str, limits: MediaLimits) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not _host_allowed(host, limits.allowed_hosts):
        raise MediaError(
            info.option, f"{info.option} must be a Discord attachment; {host or 'that'} is not"
        )
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(host)):
        raise MediaError(info.option, f"{info.option} must be downloaded over https")


def _host_allowed(host: str, patterns: Sequence[str]) -> bool:
    for pattern in (p.lower() for p in patterns):
        if pattern.startswith("*."):  # any subdomain, not the bare domain
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
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
    if declared.isdigit() and int(declared) > cap:
        raise _too_many_bytes(info.option, int(declared), cap)
    chunks: list[bytes] = []
    size = 0
    # Content-Encoding is identity (checked above), so these are the bytes on the wire.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:  # stop here: the rest is never read
            raise MediaError(info.option, f"{info.option} is over the {_size(cap)} limit")
        chunks.append(chunk)
    return b"".join(chunks)


# -- decode --------------------------------------------------------------------------------------


def decode(data: bytes, option: str, limits: MediaLimits) -> Image.Image:
    """The first frame, upright, loaded, in RGB or RGBA; refuses bombs before decoding pixels."""
    not_image = MediaError(option, f"{option} is not {KINDS} image (or the file is damaged)")
    limit = _megapixels(limits.max_pixels)
    too_big = MediaError(option, f"{option} has too many pixels; the limit is {limit} megapixels")
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bomb check (and its warning, where a filter makes it an error).
        raise too_big from None
    except Exception:  # Pillow's plugins raise many types on malformed input
        raise not_image from None
    with image:
        if image.format not in DECODED_FORMATS:
            raise not_image
        # Only the header has been read so far: refuse before any pixel memory is allocated.
        _check_pixels(option, image.width, image.height, limits.max_pixels)
        try:
            image.load()  # the first frame: an opened animation starts there
            upright = ImageOps.exif_transpose(image)
            return _rgb_or_rgba(upright)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_big from None
        except Exception:
            raise not_image from None


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):
        # 16-bit grey: Pillow's convert clips it to white instead of scaling it down.
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    if image.mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def _has_transparency(image: Image.Image) -> bool:
    """Real transparency: some pixel is not fully opaque (an all-255 alpha channel is not)."""
    if not image.has_transparency_data:
        return False
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    low, _ = rgba.getchannel("A").getextrema()
    return low < 255


# -- edit sources and masks ----------------------------------------------------------------------


def prepare_sources(
    images: list[Image.Image], model: Model, limits: MediaLimits, *, masked: bool = False
) -> list[SourceImage]:
    """Re-encode edit sources to fit the byte budget; dall-e-2 gets one square PNG.

    `masked`: a mask goes with the first image. OpenAI wants the image and its mask in the same
    format, and a mask is a PNG, so the first image stays PNG (scaled down if it must be).
    """
    if not images:
        raise MediaError("image", "an edit needs an image")
    if model is Model.DALL_E_3:
        raise MediaError("image", "dall-e-3 cannot edit images: use gpt-image-2 or gpt-image-1")
    if model is Model.DALL_E_2:
        return [_dall_e_2_source(images, limits)]
    return [
        _source(image, limits.max_source_bytes, png_only=masked and index == 0)
        for index, image in enumerate(images)
    ]


def _require_square(width: int, height: int) -> None:
    if width != height:
        raise MediaError(
            "image",
            f"dall-e-2 edits need a square image; yours is {width}x{height}: "
            "crop it or use gpt-image-1",
        )


def check_declared_for(model: Model, infos: Sequence[AttachmentInfo]) -> None:
    """Model rules Discord's metadata already answers, checked before anything is held."""
    if model is not Model.DALL_E_2:
        return
    for info in infos:
        if info.option == "image" and info.width and info.height:
            _require_square(info.width, info.height)


def _dall_e_2_source(images: list[Image.Image], limits: MediaLimits) -> SourceImage:
    if len(images) > 1:
        raise MediaError(
            "image2",
            "dall-e-2 edits take one image: leave out image2 and later, or use gpt-image-1",
        )
    image = images[0]
    _require_square(image.width, image.height)
    # OpenAI refuses an RGB PNG for dall-e-2 ("format must be in ['RGBA', 'LA', 'L']").
    rgba = image.convert("RGBA")
    encoded = _fit(rgba, min(limits.max_source_bytes, DALL_E_2_MAX_BYTES), [("PNG", None)])
    return _source_image("image", encoded)


def _source(image: Image.Image, limit: int, *, png_only: bool) -> SourceImage:
    transparent = _has_transparency(image)
    image = image.convert("RGBA" if transparent else "RGB")
    steps: list[tuple[str, int | None]] = [("PNG", None)]
    if not (transparent or png_only):
        steps += [("JPEG", quality) for quality in SOURCE_QUALITIES]
    return _source_image("image", _fit(image, limit, steps))


def prepare_mask(
    mask: Image.Image,
    first: Image.Image | SourceImage,
    model: Model,
    *,
    limits: MediaLimits | None = None,
) -> SourceImage:
    """An RGBA PNG mask the size of the first source, transparent where the image may change.

    Pass the prepared first source (a SourceImage) when you have it: if it was scaled down to fit
    the byte budget, the mask is scaled to match what is actually sent.
    """
    if model not in MASK_MODELS:
        raise MediaError("mask", f"{model} does not take a mask: use gpt-image-2 or gpt-image-1")
    size = _mask_size(mask.size, (first.width, first.height))
    if _has_transparency(mask):
        rgba = _resized(mask.convert("RGBA"), size)
    else:
        rgba = _mask_from_drawing(mask, size)
    budget = (limits or MediaLimits()).max_source_bytes
    if model is Model.DALL_E_2:
        budget = min(budget, DALL_E_2_MAX_BYTES)
    data = _encode_mask(rgba, budget)
    return SourceImage(role="mask", mime="image/png", width=size[0], height=size[1], data=data)


def _mask_size(mask: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    (mw, mh), (tw, th) = mask, target
    # Same shape within 1%: |mw/mh - tw/th| <= 1% of tw/th, without dividing.
    if mask == target or abs(mw * th - tw * mh) <= 0.01 * tw * mh:
        return target
    raise MediaError(
        "mask",
        f"the mask is {mw}x{mh} but the image is {tw}x{th}: "
        "make the mask the same size (or at least the same shape) as the image",
    )


def _mask_from_drawing(drawing: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A drawing without transparency: its light pixels mark the area to change."""
    # Threshold after scaling, so the edge stays sharp instead of half-transparent.
    luma = _resized(drawing.convert("L"), size)
    alpha = luma.point(lambda v: 0 if v >= 128 else 255)
    if alpha.getextrema() == (255, 255):
        raise MediaError(
            "mask",
            "the mask marks nothing to change: paint the area to change white "
            "(or make it transparent)",
        )
    rgba = Image.new("RGBA", size, (0, 0, 0, 255))
    rgba.putalpha(alpha)
    return rgba


def _encode_mask(rgba: Image.Image, budget: int) -> bytes:
    # The API reads only the alpha channel, so over budget the colours go first, then soft edges;
    # scaling is not an option since the mask must match the image's size.
    for simplify in (None, _alpha_only, _hard_edges):
        candidate = rgba if simplify is None else simplify(rgba)
        data = _encode(candidate, "PNG", None, budget)
        if data is not None:
            return data
    raise MediaError(
        "mask", f"the mask is too detailed to send in {_size(budget)}: use a simpler mask"
    )


def _alpha_only(rgba: Image.Image) -> Image.Image:
    flat = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    flat.putalpha(rgba.getchannel("A"))
    return flat


def _hard_edges(rgba: Image.Image) -> Image.Image:
    hard = _alpha_only(rgba)
    hard.putalpha(rgba.getchannel("A").point(lambda v: 0 if v < 128 else 255))
    return hard


# -- results -------------------------------------------------------------------------------------


def fit_for_upload(data: bytes, limit: int) -> FittedImage:
    """The image as is when it fits, else re-encoded (and scaled if need be) to `limit` bytes.

    Raises ValueError when `data` is not an image or `limit` is too small for even a tiny one.
    """
    mime = sniff_mime(data)
    if len(data) <= limit:
        width, height = _header_size(data)
        return FittedImage(data, mime, EXTENSION.get(mime, "bin"), width, height, None)
    image = _open_result(data)
    fmt = "WEBP" if _has_transparency(image) else "JPEG"
    image = image.convert("RGBA" if fmt == "WEBP" else "RGB")
    encoded = _fit(image, limit, [(fmt, quality) for quality in UPLOAD_QUALITIES])
    done = f"re-encoded as {FORMAT_NAME[fmt]} to fit the {_size(limit)} upload limit"
    if encoded.size != image.size:
        done = f"scaled to {encoded.width}x{encoded.height} and {done}"
    out_mime = MIME[fmt]
    return FittedImage(
        encoded.data, out_mime, EXTENSION[out_mime], encoded.width, encoded.height, done
    )


def _header_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"not an image ({type(exc).__name__})") from None


def _open_result(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            # Re-encoding drops EXIF, so its orientation must be applied to the pixels now.
            return _rgb_or_rgba(ImageOps.exif_transpose(image))
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"not an image ({type(exc).__name__})") from None


def probe_image(data: bytes) -> tuple[str, int, int]:
    """(MIME type, width, height) of an image file whose structure checks out; ValueError for
    anything else (an error page, a truncated or damaged file). No pixels are decoded."""
    mime = sniff_mime(data)
    if mime not in ALLOWED_TYPES:
        raise ValueError(f"not an image: starts with {data[:16]!r}")
    try:
        with Image.open(io.BytesIO(data), formats=DECODERS) as image:
            size = image.size
            image.verify()  # chunk checksums and structure, without decoding pixels
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"a damaged {mime} ({type(exc).__name__})") from None
    return mime, size[0], size[1]


def sniff_mime(data: bytes) -> str:
    """The image type from its magic bytes, whatever a filename or header says."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


# -- encoding to a byte budget -------------------------------------------------------------------


@dataclass(frozen=True)
class _Encoded:
    data: bytes
    fmt: str  # Pillow's format name
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def _source_image(role: str, encoded: _Encoded) -> SourceImage:
    return SourceImage(
        role=role,
        mime=MIME[encoded.fmt],
        width=encoded.width,
        height=encoded.height,
        data=encoded.data,
    )


def _fit(image: Image.Image, limit: int, steps: list[tuple[str, int | None]]) -> _Encoded:
    """Try each (format, quality) at full size, then scale down with the last until it fits."""
    fmt, quality = steps[-1]
    largest = min(MAX_SIDE[f] for f, _ in steps)
    longest = max(image.size)
    if longest <= largest:
        for step_fmt, step_quality in steps:
            data = _encode(image, step_fmt, step_quality, limit)
            if data is not None:
                return _Encoded(data, step_fmt, image.width, image.height)
    # Each step scales the original, so the blur of one resize does not compound.
    scale = min(1.0, largest / longest)
    if scale == 1.0:
        scale = SCALE_STEP
    while longest * scale >= MIN_SIDE:
        size = _scaled(image.size, scale)
        data = _encode(_resized(image, size), fmt, quality, limit)
        if data is not None:
            return _Encoded(data, fmt, *size)
        scale *= SCALE_STEP
    raise ValueError(f"cannot fit a {image.width}x{image.height} image into {limit} bytes")


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    width, height = size
    return (max(1, round(width * scale)), max(1, round(height * scale)))


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    # reducing_gap: a fast box reduction first, then Lanczos for the last factor of two.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


class _OverBudget(Exception):
    pass


class _CappedBuffer(io.BytesIO):
    """Aborts the encoder once its output passes the cap: a PNG that cannot fit is not finished."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.cap:
            raise _OverBudget
        return super().write(data)


def _encode(image: Image.Image, fmt: str, quality: int | None, cap: int) -> bytes | None:
    """The encoded bytes, or None when they would be more than `cap`."""
    buffer = _CappedBuffer(cap)
    options: dict[str, int] = {} if quality is None else {"quality": quality}
    try:
        image.save(buffer, fmt, **options)
    except _OverBudget:
        return None
    return buffer.getvalue()
