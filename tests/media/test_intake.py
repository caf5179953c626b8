"""Attachments to sources through the shared image pool: files that fit go as they are, byte
for byte; the others are re-encoded under the budget; the pool never runs more than its
workers at once."""

from __future__ import annotations

import asyncio
import io
import random
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.catalog.names import Model
from bot.media.intake import prepare_attachments
from bot.media.limits import AttachmentInfo, MediaError, MediaLimits
from bot.media.pool import ImagePool

CDN = "https://cdn.discordapp.com/attachments/1/2/"


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """Incompressible pixels: a PNG of them is about width * height * 3 bytes."""
    data = random.Random(seed).randbytes(width * height * 3)
    return Image.frombytes("RGB", (width, height), data)


class Files:
    """A stand-in for Discord's CDN, and the AttachmentInfo Discord gives for each file."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._serve))

    def _serve(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, content=self.files[name])

    def add(self, option: str, name: str, data: bytes, kind: str) -> AttachmentInfo:
        self.files[name] = data
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        return AttachmentInfo(option, CDN + name, name, kind, len(data), width, height)


class CountingPool(ImagePool):
    """The real pool, counting how many calls run at the same moment."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.lock = threading.Lock()
        self.active = self.peak = self.calls = 0

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            with self.lock:
                self.active += 1
                self.calls += 1
                self.peak = max(self.peak, self.active)
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.active -= 1

        return await super().run(counted)


@pytest.fixture
async def files() -> Any:
    served = Files()
    yield served
    await served.http.aclose()


@pytest.fixture
def pool() -> Any:
    made = ImagePool(1)
    yield made
    made.close()


@pytest.mark.parametrize(
    ("fmt", "kind", "options"),
    [
        ("PNG", "image/png", {}),
        ("JPEG", "image/jpeg", {"quality": 85}),
        ("WEBP", "image/webp", {"quality": 80}),
    ],
)
async def test_a_source_that_fits_is_sent_byte_for_byte(
    files: Files, pool: ImagePool, fmt: str, kind: str, options: dict[str, Any]
) -> None:
    data = encode(photo(300, 200), fmt, **options)
    attached = files.add("image", f"photo.{fmt.lower()}", data, kind)
    [source] = await prepare_attachments(
        files.http, [attached], Model.GPT_IMAGE_2, MediaLimits(), pool
    )
    assert source.data == data
    assert (source.mime, source.width, source.height) == (kind, 300, 200)


async def test_a_source_over_the_budget_is_re_encoded_under_it(
    files: Files, pool: ImagePool
) -> None:
    data = encode(photo(400, 400), "PNG")  # ~480 KB
    limits = MediaLimits(max_source_bytes=200_000)
    attached = files.add("image", "big.png", data, "image/png")
    [source] = await prepare_attachments(files.http, [attached], Model.GPT_IMAGE_2, limits, pool)
    assert len(source.data) <= 200_000 and source.mime == "image/jpeg"
    with Image.open(io.BytesIO(source.data)) as sent:
        assert sent.size == (source.width, source.height)


async def test_a_rotated_phone_photo_is_turned_upright(files: Files, pool: ImagePool) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown turned 90° clockwise
    data = encode(photo(120, 80), "JPEG", exif=exif)
    attached = files.add("image", "phone.jpg", data, "image/jpeg")
    [source] = await prepare_attachments(
        files.http, [attached], Model.GPT_IMAGE_2, MediaLimits(), pool
    )
    assert source.data != data
    assert (source.width, source.height) == (80, 120)


async def test_a_gif_is_re_encoded_because_the_models_do_not_take_it(
    files: Files, pool: ImagePool
) -> None:
    data = encode(Image.new("RGB", (64, 48), "teal"), "GIF")
    attached = files.add("image", "anim.gif", data, "image/gif")
    [source] = await prepare_attachments(
        files.http, [attached], Model.GPT_IMAGE_1, MediaLimits(), pool
    )
    assert source.mime == "image/png" and source.data.startswith(b"\x89PNG")


async def test_a_masked_jpeg_goes_as_png_like_its_mask(files: Files, pool: ImagePool) -> None:
    image = files.add("image", "a.jpg", encode(photo(64, 64), "JPEG"), "image/jpeg")
    drawn = Image.new("RGB", (64, 64), "black")
    drawn.paste((255, 255, 255), (10, 10, 30, 30))
    mask = files.add("mask", "m.png", encode(drawn, "PNG"), "image/png")
    first, sent_mask = await prepare_attachments(
        files.http, [image, mask], Model.GPT_IMAGE_2, MediaLimits(), pool
    )
    assert first.mime == "image/png" and sent_mask.role == "mask"
    assert (sent_mask.width, sent_mask.height) == (64, 64)


async def test_a_damaged_file_that_fits_is_still_refused(files: Files, pool: ImagePool) -> None:
    whole = encode(photo(200, 200), "JPEG")
    attached = files.add("image", "cut.jpg", whole[: len(whole) // 2], "image/jpeg")
    attached = AttachmentInfo(**{**attached.__dict__, "width": 200, "height": 200})
    with pytest.raises(MediaError, match="damaged"):
        await prepare_attachments(files.http, [attached], Model.GPT_IMAGE_2, MediaLimits(), pool)


async def test_the_pool_never_runs_more_than_its_workers_at_once(files: Files) -> None:
    pool = CountingPool(2)
    try:
        infos = [
            files.add("image", f"p{i}.png", encode(photo(200, 150, seed=i), "PNG"), "image/png")
            for i in range(8)
        ]
        prepared = await asyncio.gather(
            *(
                prepare_attachments(files.http, [i], Model.GPT_IMAGE_2, MediaLimits(), pool)
                for i in infos
            )
        )
    finally:
        pool.close()
    assert [s.data for [s] in prepared] == [files.files[f"p{i}.png"] for i in range(8)]
    assert pool.calls == 8 and 1 <= pool.peak <= 2


async def test_a_call_waits_for_a_free_worker() -> None:
    pool = ImagePool(2)
    entered: list[int] = []
    release = [threading.Event() for _ in range(3)]

    def work(n: int) -> int:
        entered.append(n)
        release[n].wait()
        return n

    calls = [asyncio.create_task(pool.run(work, n)) for n in range(3)]
    try:
        while len(entered) < 2:
            await asyncio.sleep(0)
        for _ in range(50):  # give a third thread every chance to start (it must not)
            await asyncio.sleep(0)
        assert sorted(entered) == [0, 1]
        release[0].set()
        assert await calls[0] == 0
        release[2].set()
        assert await calls[2] == 2  # it ran once a worker was free
        release[1].set()
        assert await calls[1] == 1
    finally:
        for event in release:
            event.set()
        pool.close()
