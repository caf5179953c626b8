"""OpenAI lane fixtures: a fast simulator on loopback and a client that does not really sleep."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from bot.openai_api.client import OpenAIImagesClient, Upload
from bot.openai_api.simulator import OpenAISimulator
from tests.conftest import RecordingSleep

# Every runtime is multiplied by this: a 45 s gpt-image-2 image takes 45 ms.
FAST = 0.001
SIM_KEY = "sk-sim-test-key-0123456789"


def png(width: int = 64, height: int = 64, *, alpha: bool = False) -> bytes:
    image = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (200, 40, 40, 0 if alpha else 255)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 64, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.fixture
async def sim() -> AsyncIterator[OpenAISimulator]:
    # Small placeholders keep rendering cheap; the reported size is still the one asked for.
    simulator = OpenAISimulator(api_key=SIM_KEY, speed=FAST, seed=99, max_image_side=256)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def client(sim: OpenAISimulator, sleeps: RecordingSleep) -> AsyncIterator[OpenAIImagesClient]:
    c = OpenAIImagesClient(
        sim.base_url,
        sim.api_key,
        timeout=20.0,
        max_retries=3,
        retry_max_delay=4.0,
        sleep=sleeps,
        rng=random.Random(7),
    )
    try:
        yield c
    finally:
        await c.aclose()


__all__ = ["FAST", "SIM_KEY", "Upload", "jpeg", "opened", "png"]
