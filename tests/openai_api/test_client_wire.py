"""The client against tiny loopback servers that answer what compatible endpoints might."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from bot.openai_api.client import OpenAIImagesClient
from bot.openai_api.errors import (
    BadResponse,
    Blocked,
    InvalidRequest,
    ModelUnavailable,
    OperatorProblem,
    Unavailable,
)
from bot.openai_api.results import PartialImage
from tests.conftest import RecordingSleep
from tests.openai_api.conftest import png

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY = {"model": "gpt-image-1", "prompt": "a boat", "n": 2, "stream": True}
IMAGE = png(8, 8)
B64 = base64.b64encode(IMAGE).decode()


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/images/generations", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def client_for(
    handler: Handler, sleeps: RecordingSleep, **kwargs: Any
) -> AsyncIterator[OpenAIImagesClient]:
    async with serve(handler) as url:
        kwargs.setdefault("max_retries", 2)
        async with OpenAIImagesClient(url, "sk-wire-test-key-abcdef", sleep=sleeps, **kwargs) as c:
            yield c


def sse(*events: tuple[str | None, Any]) -> bytes:
    out = []
    for name, payload in events:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        out.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
    return "".join(out).encode()


def streaming(body: bytes) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    return handler


def answering(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    return handler


def completed(**extra: Any) -> dict[str, Any]:
    return {"type": "image_generation.completed", "b64_json": B64, **extra}


async def test_done_after_fewer_images_than_asked_ends_the_stream(sleeps: RecordingSleep) -> None:
    body = sse((None, completed(usage={"output_tokens": 5})), (None, "[DONE]"))
    async with client_for(streaming(body), sleeps) as client:
        result = await client.generate(BODY)
    assert result.images == [IMAGE] and result.usage == {"output_tokens": 5}
    assert sleeps.delays == []


async def test_a_clean_end_with_fewer_images_is_accepted_with_a_warning(
    sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(streaming(sse((None, completed()))), sleeps) as client:
        result = await client.generate(BODY)
    assert len(result.images) == 1
    assert "1 of 2 images" in caplog.text


async def test_event_names_may_come_only_in_the_data(sleeps: RecordingSleep) -> None:
    # No `event:` lines and CRLF line ends: the payload's `type` is enough.
    body = sse(
        (
            None,
            {"type": "image_generation.partial_image", "b64_json": B64, "partial_image_index": 0},
        ),
        (None, completed()),
        (None, completed()),
    ).replace(b"\n", b"\r\n")
    seen: list[PartialImage] = []

    async def on_partial(partial: PartialImage) -> None:
        seen.append(partial)

    async with client_for(streaming(body), sleeps) as client:
        result = await client.generate(BODY, on_partial=on_partial)
    assert len(result.images) == 2 and [p.data for p in seen] == [IMAGE]


async def test_a_bad_preview_is_skipped_and_a_failing_callback_loses_nothing(
    sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    body = sse(
        ("image_generation.partial_image", {"b64_json": "%%%", "partial_image_index": 0}),
        ("image_generation.partial_image", {"b64_json": B64, "partial_image_index": 1}),
        ("image_generation.completed", completed()),
        ("image_generation.completed", completed()),
    )
    calls: list[int] = []

    async def broken(partial: PartialImage) -> None:
        calls.append(partial.partial_index)
        raise RuntimeError("the preview could not be posted")

    async with client_for(streaming(body), sleeps) as client:
        result = await client.generate(BODY, on_partial=broken)
    assert len(result.images) == 2 and calls == [1]
    assert "skipped a preview" in caplog.text and "callback failed" in caplog.text


async def test_a_final_image_that_is_not_an_image_is_refused(sleeps: RecordingSleep) -> None:
    not_an_image = base64.b64encode(b"hello, world").decode()
    body = sse((None, {"type": "image_generation.completed", "b64_json": not_an_image}))
    async with client_for(streaming(body), sleeps) as client:
        with pytest.raises(BadResponse, match="not a PNG"):
            await client.generate(BODY)


async def test_an_event_over_the_cap_is_refused(sleeps: RecordingSleep) -> None:
    body = sse((None, {"type": "image_generation.completed", "b64_json": "A" * 200_000}))
    async with client_for(streaming(body), sleeps, max_image_bytes=1_000) as client:
        with pytest.raises(BadResponse, match="over"):
            await client.generate(BODY)


async def test_an_answer_with_urls_instead_of_bytes_is_a_bad_response(
    sleeps: RecordingSleep,
) -> None:
    answer = {"created": 1, "data": [{"url": "https://example.invalid/a.png"}]}
    async with client_for(answering(200, answer), sleeps) as client:
        with pytest.raises(BadResponse, match="URL"):
            await client.generate(BODY)


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[]", b'{"data": []}'])
async def test_a_200_that_is_not_an_images_answer_is_a_bad_response(
    sleeps: RecordingSleep, body: bytes
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with client_for(handler, sleeps) as client:
        with pytest.raises(BadResponse):
            await client.generate(BODY)


async def test_a_200_that_carries_a_moderation_error_is_a_block(sleeps: RecordingSleep) -> None:
    answer = {
        "error": {"message": "rejected", "type": "x", "param": None, "code": "moderation_blocked"}
    }
    async with client_for(answering(200, answer), sleeps) as client:
        with pytest.raises(Blocked):
            await client.generate(BODY)


async def test_an_error_body_naming_the_model_param_is_model_unavailable(
    sleeps: RecordingSleep,
) -> None:
    answer = {
        "error": {
            "message": "Invalid model",
            "type": "x",
            "param": "model",
            "code": "invalid_value",
        }
    }
    async with client_for(answering(400, answer), sleeps) as client:
        with pytest.raises(ModelUnavailable) as caught:
            await client.generate(BODY)
    assert caught.value.model == "gpt-image-1"


async def test_a_404_without_a_model_code_is_a_wrong_base_url(sleeps: RecordingSleep) -> None:
    async with client_for(answering(404, {"detail": "Not Found"}), sleeps) as client:
        with pytest.raises(OperatorProblem, match="OPENAI_BASE_URL"):
            await client.generate(BODY)


async def test_an_unexpected_4xx_is_an_invalid_request(sleeps: RecordingSleep) -> None:
    async with client_for(answering(418, {"error": {"message": "teapot"}}), sleeps) as client:
        with pytest.raises(InvalidRequest) as caught:
            await client.generate(BODY)
    assert caught.value.status == 418 and sleeps.delays == []


async def test_a_key_quoted_in_an_error_is_redacted(sleeps: RecordingSleep) -> None:
    answer = {
        "error": {"message": "Project sk-proj-ab***xyz9 may not use gpt-image-1", "code": None}
    }
    async with client_for(answering(403, answer), sleeps) as client:
        with pytest.raises(OperatorProblem) as caught:
            await client.generate(BODY)
    assert "sk-proj" not in str(caught.value) and "xyz9" not in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "least"),
    [
        ({"retry-after-ms": "2500"}, 2.5),
        ({"Retry-After": "9"}, 9.0),
        ({"Retry-After": "http-date"}, 20.0),
    ],
)
async def test_retry_after_in_every_spelling(
    sleeps: RecordingSleep, headers: dict[str, str], least: float
) -> None:
    if headers.get("Retry-After") == "http-date":
        when = datetime.now(UTC) + timedelta(seconds=30)
        headers = {"Retry-After": email.utils.format_datetime(when, usegmt=True)}
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers=headers
            )
        return await streaming(sse((None, completed()), (None, completed())))(request)

    async with client_for(handler, sleeps) as client:
        result = await client.generate(BODY)
    assert len(result.images) == 2
    assert len(sleeps.delays) == 1 and least <= sleeps.delays[0] <= 120


async def test_a_lost_connection_before_any_answer_may_have_been_acted_on(
    sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    async def hang_up(request: web.Request) -> web.Response:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with client_for(hang_up, sleeps, max_retries=1) as client:
        with pytest.raises(Unavailable) as caught:
            await client.generate(BODY)
    assert caught.value.maybe_accepted is True


async def test_a_redirect_is_a_wrong_base_url_not_followed(sleeps: RecordingSleep) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("https://elsewhere.invalid/v1/images/generations")

    async with client_for(moved, sleeps) as client:
        with pytest.raises(OperatorProblem, match="redirected"):
            await client.generate(BODY)
    assert sleeps.delays == []


async def test_a_null_error_field_in_an_event_is_not_an_error(sleeps: RecordingSleep) -> None:
    body = sse((None, completed(error=None)), (None, completed(error=None)))
    async with client_for(streaming(body), sleeps) as client:
        result = await client.generate(BODY)
    assert len(result.images) == 2 and sleeps.delays == []


# Deeper than Python's json module goes (it raises RecursionError, not ValueError).
NESTED = "[" * 100_000


async def test_a_200_nested_deeper_than_a_parser_goes_is_a_bad_response(
    sleeps: RecordingSleep,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=NESTED, content_type="application/json")

    async with client_for(handler, sleeps) as client:
        with pytest.raises(BadResponse, match="not JSON"):
            await client.generate(BODY)


async def test_an_event_nested_deeper_than_a_parser_goes_is_skipped(
    sleeps: RecordingSleep,
) -> None:
    body = sse((None, NESTED), (None, completed()), (None, completed()))
    async with client_for(streaming(body), sleeps) as client:
        result = await client.generate(BODY)
    assert len(result.images) == 2


async def test_an_error_body_nested_deeper_than_a_parser_goes_is_still_an_error(
    sleeps: RecordingSleep,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=NESTED, status=400, content_type="application/json")

    async with client_for(handler, sleeps) as client:
        with pytest.raises(InvalidRequest, match="refused the request"):
            await client.generate(BODY)


NOT_AN_IMAGE = base64.b64encode(b"<html>upstream error</html>").decode()


async def test_one_final_image_that_is_not_an_image_loses_only_itself_in_a_stream(
    sleeps: RecordingSleep,
) -> None:
    """The good image was made and billed: it is kept; the bad one is reported, not retried."""
    body = sse((None, completed()), (None, completed(b64_json=NOT_AN_IMAGE)))
    async with client_for(streaming(body), sleeps) as client:
        result = await client.generate(BODY)
    assert result.images == [IMAGE] and sleeps.delays == []
    assert [why for why in result.unusable] == ["image 2 is not a PNG, JPEG or WebP image"]


async def test_one_final_image_that_is_not_an_image_loses_only_itself_in_json(
    sleeps: RecordingSleep,
) -> None:
    answer = {"created": 1, "data": [{"b64_json": "not base64!!"}, {"b64_json": B64}]}
    async with client_for(answering(200, answer), sleeps) as client:
        result = await client.generate(BODY)
    assert result.images == [IMAGE]
    assert [why for why in result.unusable] == ["image 1 is not valid base64"]


CORRUPT_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"not deflate data" * 8


@pytest.mark.parametrize("content_type", ["application/json", "text/event-stream"])
async def test_an_answer_whose_compression_is_broken_is_retried(
    sleeps: RecordingSleep, content_type: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": content_type}
        return web.Response(body=CORRUPT_GZIP, headers=headers)

    async with client_for(handler, sleeps, max_retries=1) as client:
        with pytest.raises(Unavailable, match="gave up after 2 tries") as caught:
            await client.generate(BODY)
    assert caught.value.maybe_accepted is True and len(sleeps.delays) == 1


@pytest.mark.parametrize("code", ["server_error", "moderation_blocked"])
async def test_an_error_event_after_every_image_arrived_loses_none_of_them(
    sleeps: RecordingSleep, code: str
) -> None:
    # A gateway's trailing error, read in the same chunk as the last image: the images were
    # made and billed, so they are delivered, not thrown away and paid for again.
    error = {"type": "error", "error": {"code": code, "message": "upstream closed"}}
    body = sse((None, completed()), (None, completed()), ("error", error))
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return await streaming(body)(request)

    async with client_for(handler, sleeps) as client:
        result = await client.generate(BODY)
    assert result.images == [IMAGE, IMAGE]
    assert calls == 1 and sleeps.delays == []


async def test_a_stream_that_broke_after_an_image_without_previews_is_made_at_most_twice(
    sleeps: RecordingSleep,
) -> None:
    # An endpoint that sends no previews: the first of two images came, then the connection
    # dropped. That try ran and was billed, as one with previews would have been; the last
    # try's image is kept (paid for upstream), not thrown away.
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse((None, completed())))
        assert request.transport is not None
        request.transport.close()
        return response

    async with client_for(handler, sleeps) as client:
        result = await client.generate(BODY)
    assert calls == 2 and result.images == [IMAGE]


async def test_a_json_answer_lost_mid_body_counts_as_a_billed_call(sleeps: RecordingSleep) -> None:
    # dall-e models never stream: their 200 carries the image once it is made. Its body cut
    # off means an image made, and billed, upstream: such a call is made at most twice, as a
    # stream that broke after output is, and the one made again is told (for the audit log).
    calls, told = 0, []

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": "100000"}
        )
        await response.prepare(request)
        await response.write(b'{"created": 1, "data": [{"b64_json": "' + B64.encode()[:20])
        assert request.transport is not None
        request.transport.close()
        return response

    async def on_lost(why: str) -> None:
        told.append(why)

    body = {"model": "dall-e-3", "prompt": "a boat", "response_format": "b64_json"}
    async with client_for(handler, sleeps) as client:
        with pytest.raises(Unavailable) as caught:
            await client.generate(body, on_lost=on_lost)
    assert calls == 2 and caught.value.produced == 2
    assert len(told) == 1 and caught.value.untold
