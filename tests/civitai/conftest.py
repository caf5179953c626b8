"""Fixtures for the orchestrator tests: a raw HTTP client on the simulator, with its token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bot.civitai.simulator import Simulator


@pytest.fixture
async def http(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=simulator.base_url, headers={"Authorization": f"Bearer {simulator.token}"}
    ) as client:
        yield client
