"""Shared fixtures: the OpenAPI document, a fast simulator, a client that does not really sleep."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from bot.civitai.client import OrchestratorClient
from bot.civitai.schema import OpenApiDocument
from bot.civitai.simulator import Simulator

# Every duration (runtimes and the `wait` parameter) is multiplied by this: wait=60 → 0.3 s.
FAST = 0.005


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers every backoff delay, yields once, returns."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture(scope="session")
def openapi() -> OpenApiDocument:
    return OpenApiDocument.load()


@pytest.fixture
async def simulator(openapi: OpenApiDocument) -> AsyncIterator[Simulator]:
    sim = Simulator(token="sim-test-token", speed=FAST, seed=1234, document=openapi)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def client(simulator: Simulator, sleeps: RecordingSleep) -> AsyncIterator[OrchestratorClient]:
    c = OrchestratorClient(
        simulator.base_url,
        simulator.token,
        timeout=10.0,
        max_retries=3,
        retry_max_delay=4.0,
        sleep=sleeps,
        rng=random.Random(7),
    )
    try:
        yield c
    finally:
        await c.aclose()
