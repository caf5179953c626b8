"""bot/media.py with real images built by Pillow and real HTTP from a tiny loopback server."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web
from PIL import Image, ImageDraw

from bot.catalog.names import Model
from bot.config import MediaSettings
from bot.media.attachments import check_declared, download
from bot.media.decode import decode, sniff_mime
from bot.media.fit import fit_for_upload
from bot.media.limits import AttachmentInfo, MediaError, MediaLimits
from bot.media.sources import prepare_mask, prepare_source, prepare_sources
from bot.store.jobs import SourceImage

MiB = 1024 * 1024
LIMITS = MediaLimits()


# -- helpers ---------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Incompressible pixels: the worst case for every encoder."""
    channels = len(mode)
    data = random.Random(seed).randbytes(width * height * channels)
    return Image.frombytes(mode, (width, height), data)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A 1-bit all-black PNG: tiny on disk, `width * height` pixels once decoded."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [
        compressor.compress(row * min(1000, height - start)) for start in range(0, height, 1000)
    ]
    idat = b"".join(parts) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def info(
    filename: str = "photo.png",
    content_type: str | None = "image/png",
    *,
    option: str = "image",
    url: str = "https://cdn.discordapp.com/attachments/1/2/photo.png",
    size: int = 1000,
    width: int | None = 64,
    height: int | None = 64,
) -> AttachmentInfo:
    return AttachmentInfo(option, url, filename, content_type, size, width, height)


# -- check_declared --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("photo.png", "image/png"),
        ("photo.JPG", "image/jpeg"),
        ("photo.jpeg", None),
        ("photo.webp", "image/webp"),
        ("anim.gif", "image/gif"),
        ("no-extension", "image/png"),
        ("photo.png", "image/png; charset=binary"),
        ("photo.jfif", "image/jpeg"),
    ],
)
def test_check_declared_accepts_images(filename: str, content_type: str | None) -> None:
    check_declared(info(filename, content_type), LIMITS)


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("report.pdf", "application/pdf", "report.pdf is application/pdf"),
        ("notes.txt", None, "notes.txt is a .txt file"),
        ("sneaky.png", "text/plain", "sneaky.png is text/plain"),  # the content type is wrong
        ("photo.pdf", "image/png", "photo.pdf is a .pdf file"),  # the extension is wrong
    ],
)
def test_check_declared_refuses_other_types(
    filename: str, content_type: str | None, expected: str
) -> None:
    with pytest.raises(MediaError) as caught:
        check_declared(info(filename, content_type, option="image2"), LIMITS)
    assert caught.value.option == "image2"
    assert str(caught.value) == f"image2 must be a PNG, JPEG, WebP or GIF; {expected}"


def test_check_declared_refuses_a_declared_size_over_the_cap() -> None:
    with pytest.raises(MediaError) as caught:
        check_declared(info(size=26 * MiB), LIMITS)
    assert str(caught.value) == "image is 26 MB; the limit is 25 MB"
    with pytest.raises(MediaError, match=r"^image is 31\.2 MB; the limit is 25 MB$"):
        check_declared(info(size=int(31.2 * MiB)), LIMITS)
    check_declared(info(size=25 * MiB), LIMITS)  # the cap itself is fine


def test_check_declared_refuses_huge_declared_dimensions() -> None:
    with pytest.raises(MediaError) as caught:
        check_declared(info(option="mask", width=20_000, height=20_000), LIMITS)
    assert caught.value.option == "mask"
    assert str(caught.value) == ("mask is 20000x20000 (400 megapixels); the limit is 40 megapixels")


@pytest.mark.parametrize("filename", ["empty.png", "notes.png", "drawing.png"])
def test_check_declared_refuses_a_file_discord_could_not_read_as_an_image(filename: str) -> None:
    """Discord gives no dimensions for a 0-byte file, text or SVG, whatever the name says."""
    with pytest.raises(MediaError) as caught:
        check_declared(info(filename, "image/png", width=None, height=None), LIMITS)
    assert caught.value.option == "image"
    assert str(caught.value) == (
        f"image is not a readable PNG, JPEG, WebP or GIF: {filename} is not"
    )


# -- download --------------------------------------------------------------------------------------

PAYLOAD = encode(noise(40, 40))
STREAM_CHUNK = 64 * 1024
STREAM_TOTAL = 64 * MiB
# Where the server's files are: a path like an attachment's on Discord's CDN.
FOLDER = "/attachments/1/2"


@dataclass
class Server:
    base: str
    port: int
    stream_sent: int = 0
    stream_done: asyncio.Event = field(default_factory=asyncio.Event)
    hits: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base}{FOLDER}{name}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(base="", port=0)

    async def ok(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        return web.Response(body=PAYLOAD, content_type="image/png")

    async def stream(request: web.Request) -> web.StreamResponse:
        # No Content-Length, chunked, far more than the cap: only counting bytes can stop it.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(STREAM_TOTAL // STREAM_CHUNK):
                await response.write(b"\0" * STREAM_CHUNK)
                state.stream_sent += STREAM_CHUNK
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            state.stream_done.set()
        return response

    async def long(request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 5000)

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such attachment")

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{state.port}{FOLDER}/ok")

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{FOLDER}/ok")

    async def outside(request: web.Request) -> web.Response:
        raise web.HTTPFound("/metrics")

    async def metrics(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        return web.Response(body=PAYLOAD)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(body=PAYLOAD)

    async def cut(request: web.Request) -> web.StreamResponse:
        # Promises more than it sends, then drops the connection.
        response = web.StreamResponse(headers={"Content-Length": str(len(PAYLOAD) * 4)})
        await response.prepare(request)
        await response.write(PAYLOAD)
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    for path, handler in [
        ("/ok", ok),
        ("/stream", stream),
        ("/long", long),
        ("/missing", missing),
        ("/away", away),
        ("/hop", hop),
        ("/outside", outside),
        ("/slow", slow),
        ("/cut", cut),
    ]:
        app.router.add_get(f"{FOLDER}{path}", handler)
    app.router.add_get("/metrics", metrics)  # the same host, not an attachment
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{state.port}"
    try:
        yield state
    finally:
        await runner.cleanup()


LOOPBACK = MediaLimits(allowed_hosts=("127.0.0.1",))


async def test_download_returns_the_bytes(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        data = await download(http, info(url=server.url("/ok")), LOOPBACK)
    assert data == PAYLOAD


async def test_download_follows_a_redirect_on_the_same_host(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        assert await download(http, info(url=server.url("/hop")), LOOPBACK) == PAYLOAD


async def test_download_stops_reading_a_stream_over_the_cap(server: Server) -> None:
    limits = MediaLimits(max_bytes=256 * 1024, allowed_hosts=("127.0.0.1",))
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError) as caught:
            await download(http, info(url=server.url("/stream"), size=100), limits)
    assert caught.value.option == "image"
    assert str(caught.value) == "image is over the 256 KB limit"
    await asyncio.wait_for(server.stream_done.wait(), 5)
    # The server could only push what the socket buffers held before we hung up.
    assert server.stream_sent < STREAM_TOTAL // 2


async def test_download_refuses_a_content_length_over_the_cap(server: Server) -> None:
    limits = MediaLimits(max_bytes=1000, allowed_hosts=("127.0.0.1",))
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError, match=r"^image is 4\.9 KB; the limit is 1000 bytes$"):
            await download(http, info(url=server.url("/long"), size=10), limits)


async def test_download_checks_the_declared_size_first() -> None:
    http = _no_network()
    with pytest.raises(MediaError, match="the limit is 25 MB"):
        await download(http, info(size=30 * MiB), LIMITS)


async def test_download_turns_404_into_media_error(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError) as caught:
            await download(http, info(option="mask", url=server.url("/missing")), LOOPBACK)
    assert caught.value.option == "mask"
    assert "404" in str(caught.value)


async def test_download_refuses_a_redirect_to_another_host(server: Server) -> None:
    # localhost is loopback too, but it is not the host the attachment was on.
    limits = MediaLimits(allowed_hosts=("127.0.0.1", "localhost"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError, match="redirects to another host"):
            await download(http, info(url=server.url("/away")), limits)
    assert server.hits == []


async def test_download_refuses_a_redirect_away_from_the_attachments(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError, match="must be a Discord attachment; that link is not one"):
            await download(http, info(url=server.url("/outside")), LOOPBACK)
    assert server.hits == []


async def test_a_download_cut_off_says_so_in_plain_words(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError) as caught:
            await download(http, info(option="image2", url=server.url("/cut")), LOOPBACK)
    assert caught.value.option == "image2"
    assert "the download was cut off; try again in a moment" in str(caught.value)
    assert "Error" not in str(caught.value)  # no exception class names for members


async def test_a_file_server_that_cannot_be_reached_says_so(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}{FOLDER}/gone.png"
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError) as caught:
            await download(http, info(url=url), LOOPBACK)
    assert "Discord's file server could not be reached" in str(caught.value)


async def test_download_times_out(server: Server) -> None:
    limits = MediaLimits(allowed_hosts=("127.0.0.1",), download_timeout=0.3)
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        with pytest.raises(MediaError, match="timed out"):
            await download(http, info(url=server.url("/slow")), limits)
    assert time.monotonic() - started < 3


def _no_network() -> httpx.AsyncClient:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request should be made, got {request.url}")

    return httpx.AsyncClient(transport=httpx.MockTransport(refuse))


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/attachments/photo.png",
        "https://cdn.discordapp.com.evil.example/photo.png",
        "https://127.0.0.1/photo.png",  # loopback is not allowed unless configured
    ],
)
async def test_download_refuses_hosts_not_allowed(url: str) -> None:
    async with _no_network() as http:
        with pytest.raises(MediaError, match="must be a Discord attachment"):
            await download(http, info(url=url), LIMITS)


@pytest.mark.parametrize(
    "url",
    [
        # Discord's media proxy fetches any site's file under its own name.
        "https://media.discordapp.net/external/abc/https/evil.example/photo.png",
        "https://cdn.discordapp.com/avatars/1/abc.png",
        "https://cdn.discordapp.com/attachments/../external/abc/https/evil.example/x.png",
        "https://cdn.discordapp.com/attachmentsX/1/2/photo.png",
        "https://cdn.discordapp.com/",
    ],
)
async def test_download_refuses_what_is_not_an_attachment_on_discords_hosts(url: str) -> None:
    """Only an attachment's path is fetched: the CDN's hosts serve (and proxy) much else."""
    async with _no_network() as http:
        with pytest.raises(MediaError, match="must be a Discord attachment"):
            await download(http, info(url=url), LIMITS)


async def test_download_requires_https_off_loopback() -> None:
    async with _no_network() as http:
        with pytest.raises(MediaError, match="over https"):
            await download(http, info(url="http://cdn.discordapp.com/a/b/photo.png"), LIMITS)


async def test_download_matches_wildcard_hosts_and_keeps_tokens_home() -> None:
    seen: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PAYLOAD)

    limits = MediaLimits(allowed_hosts=("*.discordapp.net",))
    headers = {"Authorization": "Bearer secret"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve), headers=headers) as http:
        url = "https://media.discordapp.net/attachments/1/2/photo.png"
        assert await download(http, info(url=url), limits) == PAYLOAD
        with pytest.raises(MediaError, match="must be a Discord attachment"):
            await download(http, info(url="https://discordapp.net/photo.png"), limits)
    assert len(seen) == 1
    assert "authorization" not in seen[0].headers


# -- decode ----------------------------------------------------------------------------------------


def test_decode_refuses_text_named_png() -> None:
    with pytest.raises(MediaError) as caught:
        decode(b"this is not an image at all\n" * 10, "image", LIMITS)
    assert caught.value.option == "image"
    assert "is not a PNG, JPEG, WebP or GIF image" in str(caught.value)


def test_decode_refuses_other_real_formats() -> None:
    bmp = encode(Image.new("RGB", (8, 8), "red"), "BMP")
    with pytest.raises(MediaError, match="not a PNG, JPEG, WebP or GIF"):
        decode(bmp, "image", LIMITS)


def test_decode_refuses_a_truncated_file() -> None:
    data = encode(noise(200, 200))
    with pytest.raises(MediaError, match="damaged"):
        decode(data[: len(data) // 2], "image", LIMITS)


@pytest.mark.parametrize(("width", "height"), [(20_000, 20_000), (8_000, 6_000)])
def test_decode_refuses_a_decompression_bomb_before_allocating(width: int, height: int) -> None:
    # 20000x20000 trips Pillow's own check too; 8000x6000 only ours (48 M > 40 M pixels).
    data = bomb_png(width, height)
    assert len(data) < 200_000
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        decode(data, "image", LIMITS)
    assert time.monotonic() - started < 0.5
    assert caught.value.option == "image"
    assert "40 megapixels" in str(caught.value)


def test_decode_takes_the_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = decode(data, "image", LIMITS)
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 0, 0)


def test_decode_takes_the_first_picture_of_a_phone_mpo() -> None:
    pictures = [Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "blue")]
    data = encode(pictures[0], "MPO", save_all=True, append_images=pictures[1:])
    image = decode(data, "image", LIMITS)
    red, green, blue = image.getpixel((10, 10))
    assert red > 200 and green < 50 and blue < 50


def test_decode_applies_exif_orientation() -> None:
    # Stored 200x100, left half red, right half blue; orientation 6 means "rotate 90° clockwise".
    stored = Image.new("RGB", (200, 100), "blue")
    stored.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode(encode(stored, "JPEG", exif=exif, quality=95), "image", LIMITS)
    assert image.size == (100, 200)
    top, bottom = image.getpixel((50, 20)), image.getpixel((50, 180))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_decode_keeps_alpha() -> None:
    source = Image.new("RGBA", (40, 40), (10, 20, 30, 255))
    source.putpixel((3, 3), (10, 20, 30, 0))
    image = decode(encode(source), "image", LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((3, 3))[3] == 0
    assert image.getpixel((20, 20)) == (10, 20, 30, 255)


def test_decode_keeps_the_transparency_of_16_bit_grey() -> None:
    """16-bit grey marks its transparent pixels with one 16-bit value (tRNS)."""
    grey = Image.new("I;16", (16, 16), 30_000)
    grey.putpixel((0, 0), 1_000)
    image = decode(encode(grey, transparency=1_000), "image", LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0
    assert image.getpixel((8, 8)) == (117, 117, 117, 255)  # 30000 / 256, opaque


def raw_png(
    rows: list[bytes], width: int, depth: int, colour: int, trns: bytes | None = None
) -> bytes:
    """A PNG from its scanlines as they are (no filter, not interlaced), with a tRNS chunk:
    for the bit depths and colour types Pillow cannot write."""
    header = struct.pack(">IIBBBBB", width, len(rows), depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + (_png_chunk(b"tRNS", trns) if trns is not None else b"")
        + _png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + row for row in rows)))
        + _png_chunk(b"IEND", b"")
    )


def png16(rows: list[list[tuple[int, ...]]], *, key: tuple[int, int, int] | None = None) -> bytes:
    """A 16-bit truecolour PNG (RGB, or RGBA for 4 samples a pixel), with `key` as its
    transparent colour (tRNS)."""
    colour = 6 if len(rows[0][0]) == 4 else 2
    lines = [b"".join(struct.pack(f">{len(p)}H", *p) for p in row) for row in rows]
    trns = struct.pack(">3H", *key) if key is not None else None
    return raw_png(lines, len(rows[0]), 16, colour, trns)


def test_decode_keeps_the_transparent_colour_of_8_bit_rgb() -> None:
    """An optimiser (optipng, oxipng) stores an RGBA image whose alpha is only 0 or 255 as RGB
    with one transparent colour (tRNS): its transparent background stays transparent."""
    clear, solid = bytes((10, 20, 30)), bytes((200, 100, 50))
    rows = [clear + solid * 7] + [solid * 8] * 7
    image = decode(raw_png(rows, 8, 8, 2, struct.pack(">3H", 10, 20, 30)), "image", LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((4, 4)) == (200, 100, 50, 255)


@pytest.mark.parametrize(
    ("depth", "row", "key", "clear", "solid"),
    [
        (4, bytes((0x1F, 0xFF)), 1, 17, 255),  # pixels 1, 15, 15, 15: 1 is the key
        (2, bytes((0b10111111,)), 2, 170, 255),  # pixels 2, 3, 3, 3: 2 is the key
    ],
)
def test_decode_keeps_the_transparent_grey_of_low_bit_grey(
    depth: int, row: bytes, key: int, clear: int, solid: int
) -> None:
    """Grey of 2 or 4 bits is widened to 8 (1 of 4 bits is 17): its transparent grey too."""
    image = decode(raw_png([row] * 4, 4, depth, 0, struct.pack(">H", key)), "image", LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0)) == (clear, clear, clear, 0)
    assert image.getpixel((1, 0)) == (solid, solid, solid, 255)


def test_decode_keeps_the_transparent_colour_of_16_bit_rgb() -> None:
    """A 16-bit RGB PNG marks its transparent pixels with one 16-bit colour (tRNS); a pixel
    sharing only its high bytes (its 8-bit look) stays opaque."""
    clear, near, solid = (1000, 2000, 3000), (1001, 2000, 3000), (60000, 30000, 1000)
    rows = [[solid] * 8 for _ in range(8)]
    rows[0][0], rows[0][1] = clear, near
    image = decode(png16(rows, key=clear), "image", LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0
    assert image.getpixel((1, 0)) == (3, 7, 11, 255)  # 1001 >> 8...: opaque
    assert image.getpixel((4, 4)) == (234, 117, 3, 255)


def test_decode_keeps_the_alpha_of_16_bit_rgba() -> None:
    rows = [[(60000, 30000, 1000, 65535)] * 8 for _ in range(8)]
    rows[0][0] = (60000, 30000, 1000, 0)
    image = decode(png16(rows), "image", LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((4, 4)) == (234, 117, 3, 255)


def flat_png(side: int, depth: int, colour: int, extra: bytes = b"") -> bytes:
    """A square PNG of one colour type and bit depth, all zeros: a few KB for any size, made
    row by row (no image of that size in memory)."""
    channels = {0: 1, 6: 4}[colour]
    header = struct.pack(">IIBBBBB", side, side, depth, colour, 0, 0, 0)
    row = b"\0" * (1 + side * channels * depth // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 100) for _ in range(side // 100))
    idat += compressor.flush()
    chunks = _png_chunk(b"IHDR", header) + extra + _png_chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + chunks + _png_chunk(b"IEND", b"")


# VmHWM, not ru_maxrss: Linux carries that over from the test process through exec.
PEAK_OF_DECODE = """
import sys
from bot.media.decode import decode
from bot.media.limits import MediaLimits
def high_water():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
data = open(sys.argv[1], "rb").read()
before = high_water()
decode(data, "image", MediaLimits())
print(high_water() - before)
"""


def decode_peak(tmp_path, name: str, data: bytes) -> int:
    """How much more memory (KB, the process's high-water mark) decoding `data` took."""
    path = tmp_path / name
    path.write_bytes(data)
    run = [sys.executable, "-c", PEAK_OF_DECODE, str(path)]
    out = subprocess.run(run, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_16_bit_grey_with_transparency_takes_no_more_memory_than_rgba(tmp_path) -> None:
    """A few KB of 16-bit grey PNG under the pixel cap: its decode went through full-size
    32-bit copies (five at once, 800 MB for 40 megapixels) where an 8-bit RGBA one of the
    same size needs one of 160 MB: one small upload could take the bot's memory."""
    side = 5000
    grey = flat_png(side, 16, 0, _png_chunk(b"tRNS", b"\0\0"))
    assert len(grey) < 100_000
    rgba = flat_png(side, 8, 6)
    rgba_peak = decode_peak(tmp_path, "rgba.png", rgba)
    assert rgba_peak > 50_000  # KB: the 100 MB it decodes to, seen
    grey_peak = decode_peak(tmp_path, "grey.png", grey)
    assert grey_peak < 1.5 * rgba_peak


def test_decode_turns_palette_transparency_into_rgba_and_webp_decodes() -> None:
    palette = Image.new("P", (16, 16), 1)
    palette.putpixel((0, 0), 0)
    image = decode(encode(palette, transparency=0), "image", LIMITS)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0
    webp = decode(encode(Image.new("RGB", (30, 20), "red"), "WEBP"), "image", LIMITS)
    assert (webp.mode, webp.size) == ("RGB", (30, 20))


def many_scans(data: bytes, scans: int) -> bytes:
    """`data` (a progressive JPEG) with its last scan repeated `scans` times."""
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * scans + data[end:]


@pytest.mark.parametrize(
    "kind", ["baseline", "progressive", "progressive CMYK", "MPO", "motion photo"]
)
def test_decode_reads_ordinary_jpegs_whatever_bytes_follow_them(kind: str) -> None:
    """The scan limit counts the decoded picture's scans only: not the bytes of a phone's
    second MPO picture or a motion photo's video (megabytes in which FF DA occurs by chance)."""
    photo = noise(120, 80)
    data = {
        "baseline": lambda: encode(photo, "JPEG"),
        "progressive": lambda: encode(photo, "JPEG", progressive=True),
        "progressive CMYK": lambda: encode(photo.convert("CMYK"), "JPEG", progressive=True),
        "MPO": lambda: encode(
            photo, "MPO", save_all=True, append_images=[photo] * 8, progressive=True
        ),
        "motion photo": lambda: (
            encode(photo, "JPEG", progressive=True) + random.Random(3).randbytes(8 * 1024 * 1024)
        ),
    }[kind]()
    assert decode(data, "image", LIMITS).size == (120, 80)


def test_decode_refuses_a_jpeg_of_too_many_scans_naming_the_option() -> None:
    data = many_scans(encode(noise(64, 64), "JPEG", progressive=True), 200)
    with pytest.raises(MediaError) as caught:
        decode(data, "mask", LIMITS)
    assert caught.value.option == "mask"
    assert "mask is a JPEG of more than 100 scans" in str(caught.value)


def many_chunks(count: int, kind: bytes = b"tEXt") -> bytes:
    """A 16x16 PNG with `count` small chunks before its pixels (and one more after them)."""
    image = encode(Image.new("RGB", (16, 16)))
    idat = image.index(b"IDAT") - 4
    filler = _png_chunk(kind, b"k\0" if kind == b"tEXt" else b"")
    return image[:idat] + filler * count + image[idat:-12] + filler + image[-12:]


@pytest.mark.parametrize("kind", [b"tEXt", b"zzZz"])
def test_decode_refuses_a_png_of_millions_of_chunks_naming_the_option(kind: bytes) -> None:
    """Pillow reads a PNG's chunks one Python step each: 25 MB of empty ones kept the shared
    image pool busy for seconds per file (and five files go with one edit)."""
    data = many_chunks(25 * MiB // 14, kind)
    for read in (decode, prepare_one):
        with pytest.raises(MediaError) as caught:
            read(data, "image2", LIMITS)
        assert caught.value.option == "image2"
        assert "image2 is a PNG of more than 20,000 chunks" in str(caught.value)


def test_an_ordinary_png_of_many_chunks_decodes() -> None:
    """Encoders split the pixels into IDAT chunks of 8 KB (some smaller): thousands of them in
    a big file, and a few text chunks."""
    data = many_chunks(19_000)
    assert decode(data, "image", LIMITS).size == (16, 16)
    assert prepare_one(data, "image", LIMITS).width == 16


def prepare_one(data: bytes, option: str, limits: MediaLimits) -> SourceImage:
    return prepare_source(data, option, Model.GPT_IMAGE_2, limits)


def test_scans_behind_thousands_of_empty_segments_are_still_counted() -> None:
    """Past a few thousand segments the walk stops taking a step per segment; the scans after
    them still count."""
    data = encode(noise(64, 64), "JPEG", progressive=True)
    comments = b"\xff\xfe\x00\x02" * 50_000
    # Between the scans (before the first, so many are refused on their own).
    second_scan = data.find(b"\xff\xda", data.find(b"\xff\xda") + 2)
    padded = many_scans(data[:second_scan] + comments + data[second_scan:], 200)
    with pytest.raises(MediaError, match="more than 100 scans"):
        decode(padded, "image", LIMITS)


def test_decode_refuses_a_jpeg_of_millions_of_segments_before_its_picture() -> None:
    """Pillow reads the segments before a JPEG's first scan one Python step each: 25 MB of
    empty comments held the shared image pool for 7 s per file."""
    data = encode(noise(64, 64), "JPEG")
    padded = data[:2] + b"\xff\xfe\x00\x02" * (25 * MiB // 4) + data[2:]
    for read in (decode, prepare_one):
        with pytest.raises(MediaError) as caught:
            read(padded, "image3", LIMITS)
        assert caught.value.option == "image3"
        assert "image3 is a JPEG of more than 2,000 segments before its picture" in str(
            caught.value
        )


# -- prepare_sources -------------------------------------------------------------------------------


def test_prepare_sources_fits_a_noisy_photo_as_jpeg_then_smaller() -> None:
    limits = MediaLimits(max_source_bytes=300 * 1024)
    [source] = prepare_sources([noise(3000, 3000)], Model.GPT_IMAGE_2, limits)
    assert source.role == "image"
    assert source.mime == "image/jpeg"
    assert len(source.data) <= limits.max_source_bytes
    assert source.width < 3000 and source.width == source.height
    assert opened(source.data).size == (source.width, source.height)


def test_prepare_sources_keeps_a_plain_image_as_png() -> None:
    image = Image.new("RGB", (800, 600), "teal")
    sources = prepare_sources([image, image.copy()], Model.GPT_IMAGE_1, LIMITS)
    assert [(s.mime, s.width, s.height) for s in sources] == [("image/png", 800, 600)] * 2
    assert opened(sources[0].data).mode == "RGB"


def test_prepare_sources_keeps_transparency_as_png() -> None:
    image = noise(700, 700, "RGBA")
    limits = MediaLimits(max_source_bytes=300 * 1024)
    [source] = prepare_sources([image], Model.GPT_IMAGE_2, limits)
    assert source.mime == "image/png"
    assert len(source.data) <= limits.max_source_bytes
    decoded = opened(source.data)
    assert decoded.mode == "RGBA"
    assert decoded.getchannel("A").getextrema()[0] < 255
    assert decoded.size == (source.width, source.height) and source.width < 700


def test_prepare_sources_keeps_a_masked_first_image_as_png() -> None:
    limits = MediaLimits(max_source_bytes=300 * 1024)
    first, second = prepare_sources(
        [noise(600, 600), noise(600, 600, seed=2)], Model.GPT_IMAGE_2, limits, masked=True
    )
    assert first.mime == "image/png" and second.mime == "image/jpeg"
    assert len(first.data) <= limits.max_source_bytes


def test_prepare_sources_dall_e_2_needs_a_square() -> None:
    with pytest.raises(MediaError) as caught:
        prepare_sources([Image.new("RGB", (1200, 800))], Model.DALL_E_2, LIMITS)
    assert caught.value.option == "image"
    assert str(caught.value) == (
        "dall-e-2 edits need a square image; yours is 1200x800: crop it or use gpt-image-1"
    )


def test_prepare_sources_dall_e_2_takes_one_image() -> None:
    square = Image.new("RGB", (256, 256))
    with pytest.raises(MediaError) as caught:
        prepare_sources([square, square], Model.DALL_E_2, LIMITS)
    assert caught.value.option == "image2"


def test_prepare_sources_dall_e_2_square_becomes_an_rgba_png_under_4_mb() -> None:
    [source] = prepare_sources([noise(1400, 1400)], Model.DALL_E_2, LIMITS)
    assert source.mime == "image/png"
    assert len(source.data) < 4_000_000
    assert source.width == source.height < 1400
    decoded = opened(source.data)
    assert decoded.mode == "RGBA" and decoded.size == (source.width, source.height)


def test_prepare_sources_refuses_dall_e_3() -> None:
    with pytest.raises(MediaError, match="dall-e-3 cannot edit"):
        prepare_sources([Image.new("RGB", (64, 64))], Model.DALL_E_3, LIMITS)


# -- prepare_mask ----------------------------------------------------------------------------------


def circle_drawing(size: int = 256) -> Image.Image:
    drawing = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(drawing).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), "white")
    return drawing


def test_prepare_mask_turns_a_drawing_into_alpha() -> None:
    drawing = circle_drawing()
    mask = prepare_mask(drawing, Image.new("RGB", (256, 256)), Model.GPT_IMAGE_2)
    assert (mask.role, mask.mime, mask.width, mask.height) == ("mask", "image/png", 256, 256)
    decoded = opened(mask.data)
    assert decoded.mode == "RGBA"
    alpha = decoded.getchannel("A").tobytes()
    white = drawing.convert("L").tobytes()
    assert [a == 0 for a in alpha] == [v == 255 for v in white]
    assert set(alpha) == {0, 255}


def test_prepare_mask_treats_an_opaque_rgba_drawing_as_a_drawing() -> None:
    drawing = circle_drawing(64).convert("RGBA")
    mask = prepare_mask(drawing, Image.new("RGB", (64, 64)), Model.GPT_IMAGE_1)
    assert opened(mask.data).getpixel((32, 32))[3] == 0
    assert opened(mask.data).getpixel((1, 1))[3] == 255


def test_prepare_mask_uses_a_transparent_mask_as_is() -> None:
    mask_image = Image.new("RGBA", (100, 80), (200, 100, 50, 255))
    mask_image.paste((0, 0, 0, 0), (10, 10, 50, 40))
    mask_image.putpixel((70, 70), (1, 2, 3, 128))
    mask = prepare_mask(mask_image, Image.new("RGB", (100, 80)), Model.GPT_IMAGE_2)
    decoded = opened(mask.data)
    assert decoded.tobytes() == mask_image.tobytes()


def test_prepare_mask_scales_the_same_shape() -> None:
    mask = prepare_mask(circle_drawing(128), Image.new("RGB", (256, 256)), Model.GPT_IMAGE_2)
    decoded = opened(mask.data)
    assert decoded.size == (256, 256) == (mask.width, mask.height)
    assert decoded.getpixel((128, 128))[3] == 0
    assert decoded.getpixel((5, 5))[3] == 255
    # Within 1%: 1000x563 against 1920x1080.
    near = prepare_mask(circle_drawing(1000).resize((1000, 563)), SOURCE_1080P, Model.GPT_IMAGE_1)
    assert (near.width, near.height) == (1920, 1080)


SOURCE_1080P = SourceImage("image", "image/jpeg", 1920, 1080, b"")


def test_prepare_mask_matches_a_prepared_source_that_was_scaled() -> None:
    first = SourceImage("image", "image/png", 850, 850, b"")
    mask = prepare_mask(circle_drawing(1000), first, Model.GPT_IMAGE_2)
    assert (mask.width, mask.height) == (850, 850)
    assert opened(mask.data).size == (850, 850)


def test_prepare_mask_refuses_another_shape() -> None:
    with pytest.raises(MediaError) as caught:
        prepare_mask(
            Image.new("RGB", (300, 200), "white"), Image.new("RGB", (256, 256)), Model.GPT_IMAGE_2
        )
    assert caught.value.option == "mask"
    assert "300x200" in str(caught.value) and "256x256" in str(caught.value)


def test_prepare_mask_refuses_gpt_image_1_5() -> None:
    with pytest.raises(MediaError) as caught:
        prepare_mask(circle_drawing(), Image.new("RGB", (256, 256)), Model.GPT_IMAGE_1_5)
    assert caught.value.option == "mask"
    assert str(caught.value) == (
        "gpt-image-1.5 does not take a mask: use gpt-image-2, gpt-image-1 or dall-e-2"
    )


def test_prepare_mask_refuses_a_drawing_that_marks_nothing() -> None:
    with pytest.raises(MediaError, match="marks nothing"):
        prepare_mask(Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64)), Model.GPT_IMAGE_2)


def test_prepare_mask_refuses_a_transparent_mask_with_no_fully_clear_pixel() -> None:
    # Half see-through everywhere: the API edits only where alpha is 0, so nothing would change.
    half = Image.new("RGBA", (64, 64), (255, 255, 255, 128))
    with pytest.raises(MediaError) as caught:
        prepare_mask(half, Image.new("RGB", (64, 64)), Model.GPT_IMAGE_2)
    assert caught.value.option == "mask"
    assert str(caught.value) == (
        "the mask marks nothing to change: no pixel of it is fully transparent; make the "
        "area to change fully transparent (or paint it white on black, without transparency)"
    )


def test_prepare_mask_dall_e_2_png_under_4_mb() -> None:
    mask_image = noise(1024, 1024, "RGBA")  # the worst case: every pixel a different alpha
    mask = prepare_mask(mask_image, Image.new("RGB", (1024, 1024)), Model.DALL_E_2)
    assert mask.mime == "image/png" and len(mask.data) < 4_000_000
    decoded = opened(mask.data)
    assert decoded.mode == "RGBA" and decoded.size == (1024, 1024)
    # Too big as is, so the colours went and the alpha (all the API reads) stayed exact.
    assert decoded.getchannel("A").tobytes() == mask_image.getchannel("A").tobytes()


# -- fit_for_upload --------------------------------------------------------------------------------


def test_fit_for_upload_leaves_a_small_image_alone() -> None:
    data = encode(Image.new("RGB", (300, 200), "navy"))
    fitted = fit_for_upload(data, 10 * MiB)
    assert fitted.data is data
    assert (fitted.mime, fitted.extension, fitted.width, fitted.height) == (
        "image/png",
        "png",
        300,
        200,
    )
    assert fitted.note is None


def test_fit_for_upload_re_encodes_a_big_png_as_jpeg() -> None:
    data = encode(noise(2000, 2000), compress_level=1)
    assert len(data) > 10 * MiB
    fitted = fit_for_upload(data, 10 * MiB)
    assert len(fitted.data) <= 10 * MiB
    assert (fitted.mime, fitted.extension) == ("image/jpeg", "jpg")
    assert fitted.note == "re-encoded as JPEG to fit the 10 MB upload limit"
    assert opened(fitted.data).size == (fitted.width, fitted.height) == (2000, 2000)


def test_fit_for_upload_keeps_alpha_as_webp() -> None:
    image = noise(800, 800, "RGBA")
    alpha = Image.new("L", (800, 800), 255)
    alpha.paste(0, (0, 0, 400, 800))
    image.putalpha(alpha)
    data = encode(image, compress_level=1)
    fitted = fit_for_upload(data, len(data) // 2)
    assert (fitted.mime, fitted.extension) == ("image/webp", "webp")
    assert len(fitted.data) <= len(data) // 2
    assert fitted.note is not None and "WebP" in fitted.note
    decoded = opened(fitted.data)
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((100, 400))[3] < 10
    assert decoded.getpixel((fitted.width - 100, 400))[3] > 245


def test_fit_for_upload_scales_when_quality_is_not_enough() -> None:
    data = encode(noise(1000, 1000), compress_level=1)
    fitted = fit_for_upload(data, 50 * 1024)
    assert len(fitted.data) <= 50 * 1024
    assert fitted.width < 1000
    assert fitted.note == (
        f"scaled to {fitted.width}x{fitted.height} and re-encoded as JPEG "
        "to fit the 50 KB upload limit"
    )
    assert opened(fitted.data).size == (fitted.width, fitted.height)


@pytest.mark.parametrize("limit", [5_000, 40_000, 300_000, 2_000_000])
def test_fit_for_upload_never_exceeds_the_limit(limit: int) -> None:
    data = encode(noise(900, 500), compress_level=1)
    fitted = fit_for_upload(data, limit)
    assert len(fitted.data) <= limit
    decoded = opened(fitted.data)
    assert decoded.size == (fitted.width, fitted.height)
    assert abs(fitted.width / fitted.height - 900 / 500) < 0.05


def test_fit_for_upload_refuses_the_impossible() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        fit_for_upload(encode(noise(200, 200)), 100)
    with pytest.raises(ValueError, match="not an image"):
        fit_for_upload(b"garbage" * 10, 20)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "EPS", "PSD"])
def test_fit_for_upload_opens_no_other_format(fmt: str) -> None:
    """Only the decoders the sources get run here too: Pillow's EPS plugin starts Ghostscript,
    and PSD, TIFF and the rest are parsers nothing here needs."""
    if fmt == "PSD":  # Pillow writes no PSD: a minimal one, 64x64 RGB, raw
        header = b"8BPS" + (1).to_bytes(2, "big") + bytes(6) + (3).to_bytes(2, "big")
        header += (64).to_bytes(4, "big") * 2 + (8).to_bytes(2, "big") + (3).to_bytes(2, "big")
        data = header + bytes(12) + bytes(2) + bytes(3 * 64 * 64)
    else:
        data = encode(noise(64, 64), fmt)
    for limit in (len(data) * 2, len(data) // 2):  # kept as it is, or re-encoded
        with pytest.raises(ValueError, match="not an image"):
            fit_for_upload(data, limit)


# -- small pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_sniff_mime(fmt: str, mime: str) -> None:
    assert sniff_mime(encode(Image.new("RGB", (4, 4)), fmt)) == mime


def test_sniff_mime_unknown() -> None:
    assert sniff_mime(b"%PDF-1.7 ...") == "application/octet-stream"
    assert sniff_mime(b"") == "application/octet-stream"


def test_limits_from_settings() -> None:
    media = MediaSettings(max_attachment_bytes=1000, max_pixels=2000, max_source_bytes=3000)
    limits = MediaLimits.from_settings(media)
    assert (limits.max_bytes, limits.max_pixels, limits.max_source_bytes) == (1000, 2000, 3000)
    assert limits.allowed_hosts == ("cdn.discordapp.com", "media.discordapp.net")
    assert MediaLimits.from_settings(media, ("127.0.0.1",)).allowed_hosts == ("127.0.0.1",)


def test_media_error_carries_option_and_message() -> None:
    error = MediaError("image3", "image3 is broken")
    assert (error.option, error.message, str(error)) == (
        "image3",
        "image3 is broken",
        "image3 is broken",
    )


def test_fit_for_upload_applies_exif_orientation_before_dropping_it() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(noise(400, 200), "JPEG", exif=exif, quality=95)
    fitted = fit_for_upload(data, len(data) // 2)
    assert abs(fitted.height / fitted.width - 2) < 0.05  # stored 400x200, shown upright
    assert opened(fitted.data).getexif().get(0x0112) is None
