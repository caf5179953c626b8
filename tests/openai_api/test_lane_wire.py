"""The OpenAI lane under the real engine against tiny loopback endpoints that answer what
compatible servers might (the simulator answers only what OpenAI does)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from bot.engine.parts import EngineSettings
from tests.openai_api.lane_harness import LaneHarness, lane_harness
from tests.openai_api.test_client_wire import Handler, completed, serve, sse, streaming

pytestmark = pytest.mark.timeout(60)


@dataclass
class Endpoint:
    """What lane_harness needs of a simulator: where it is and its key."""

    base_url: str
    api_key: str = "sk-tiny-endpoint-key"


@contextlib.asynccontextmanager
async def lane_on(tmp_path: Path, handler: Handler) -> AsyncIterator[LaneHarness]:
    async with (
        serve(handler) as url,
        lane_harness(
            tmp_path,
            sim=Endpoint(url),  # type: ignore[arg-type]
            engine_settings=EngineSettings(retry_base=0.01, retry_cap=0.05, drain=0.0),
        ) as h,
    ):
        yield h


@pytest.mark.parametrize("total", ["1568", {"image": 1568}, None, 12.5])
async def test_usage_reported_in_an_odd_shape_still_delivers_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, total: object
) -> None:
    """A compatible server's usage with total_tokens as text (or an object): the images
    were made and paid for, so they are delivered and charged once, not called for again."""
    caplog.set_level(logging.WARNING)
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        usage = {"total_tokens": total, "output_tokens": 1568}
        return await streaming(sse((None, completed(usage=usage))))(request)

    async with lane_on(tmp_path, handler) as h:
        await h.grant(1000)
        await h.engine.start()
        job = await h.run(h.request())
        assert job.status.value == "done", job.error
        assert job.charged == 65 and await h.available() == 1000 - 65
        assert calls == 1 and len(h.publisher.posts) == 1
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("bot")]
