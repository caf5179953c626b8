"""The orchestrator client over real HTTP: against the simulator, and tiny servers for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.catalog import RequestOptions, build_request
from bot.catalog.names import Model, Operation
from bot.catalog.request import ImageRequest
from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import (
    BlobExpired,
    BlobRefused,
    Forbidden,
    NotFound,
    OrchestratorError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from bot.civitai.models import WorkflowStatus
from bot.civitai.schema import OpenApiDocument
from bot.civitai.simulator import Outcome, Simulator
from tests.conftest import RecordingSleep

S = WorkflowStatus


def gpt2(size: str = "1024x1024", quantity: int = 1, **options: Any) -> ImageRequest:
    return build_request(
        Model.GPT_IMAGE_2,
        Operation.CREATE,
        RequestOptions(prompt="a red fox in the snow", size=size, quantity=quantity, **options),
    )


def template(client: OrchestratorClient, request: ImageRequest, external_id: str) -> dict:
    return client.template([request.step()], external_id)


# -- tiny servers --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(routes: list[web.RouteDef], sites: int = 1) -> AsyncIterator[list[str]]:
    """An aiohttp app on `sites` loopback ports; yields their base URLs."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    urls = []
    for _ in range(sites):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
    for address in runner.addresses:
        urls.append(f"http://127.0.0.1:{address[1]}")
    try:
        yield urls
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- submit, long-poll, whatif, idempotency, cancel ----------------------------------------------


async def test_submit_with_wait_returns_succeeded_images_and_the_charge(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    request = gpt2("1536x1024", quantity=2, quality="high")
    workflow = await client.submit(template(client, request, "job-1"), wait=300)
    assert workflow.status == S.SUCCEEDED and workflow.terminal
    assert workflow.charged() == request.buzz == 2 * 221
    images = workflow.images()
    assert len(images) == 2
    assert all(
        img.available and img.url and (img.width, img.height) == (1536, 1024) for img in images
    )
    assert not workflow.blocked()
    assert len(simulator.submissions) == 1
    assert simulator.submissions[0]["steps"] == [request.step()]
    assert client.stats["submit"] == 1


async def test_long_poll_returns_as_soon_as_the_workflow_ends(openapi: OpenApiDocument) -> None:
    # At speed 0.1 a wait of 300 is 30 real seconds; the workflow ends after about 1.
    async with Simulator(speed=0.1, seed=3, document=openapi) as sim:
        sim.script(Outcome("succeed", runtime=5))
        async with OrchestratorClient(sim.base_url, sim.token) as client:
            submitted = await client.submit(template(client, gpt2(), "job-lp"), wait=0)
            assert not submitted.terminal
            started = time.monotonic()
            workflow = await client.get(submitted.id, wait=300)
            elapsed = time.monotonic() - started
    assert workflow.status == S.SUCCEEDED
    assert elapsed < 15, f"the long-poll held on for {elapsed:.1f}s of its 30s"
    assert sim.requests["get"] == 1


async def test_long_poll_that_times_out_returns_the_unfinished_workflow(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script("never")
    submitted = await client.submit(template(client, gpt2(), "job-202"), wait=0)
    workflow = await client.get(submitted.id, wait=5)  # 0.05 s at this speed: the 202 path
    assert workflow.id == submitted.id
    assert not workflow.terminal
    assert workflow.status in (S.UNASSIGNED, S.SCHEDULED, S.PROCESSING)
    assert workflow.images() == []


async def test_whatif_returns_the_cost_without_creating_a_workflow(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    request = gpt2("3840x2160", quality="medium")
    workflow = await client.submit(template(client, request, "quote-1"), whatif=True)
    assert workflow.cost is not None and workflow.cost.total == request.buzz == 143
    assert workflow.id is None
    assert workflow.charged() == 0
    assert simulator.submissions == [] and simulator.workflows == {}
    assert client.stats["whatif"] == 1 and client.stats["submit"] == 0


async def test_same_external_id_is_the_same_workflow(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    request = gpt2()
    first = await client.submit(template(client, request, "job-idem"), wait=0)
    again = await client.submit(template(client, request, "job-idem"), wait=0)
    assert first.id == again.id
    assert len(simulator.submissions) == 1
    assert len(simulator.workflows) == 1
    other = await client.submit(template(client, request, "job-other"), wait=0)
    assert other.id != first.id


async def test_submit_refuses_a_template_without_external_id(client: OrchestratorClient) -> None:
    with pytest.raises(ValueError, match="externalId"):
        await client.submit({"steps": [gpt2().step()]})


async def test_template_carries_currencies_and_external_id(simulator: Simulator) -> None:
    async with OrchestratorClient(
        simulator.base_url, simulator.token, currencies=["blue"]
    ) as client:
        body = client.template([gpt2().step()], "job-cur")
        assert body["currencies"] == ["blue"] and body["externalId"] == "job-cur"
        workflow = await client.submit(body, wait=0)
    assert workflow.external_id is not None and workflow.external_id.endswith("job-cur")
    assert simulator.submissions[0]["currencies"] == ["blue"]


async def test_cancel(openapi: OpenApiDocument) -> None:
    # Real speed: the workflow is still queued when the cancel arrives.
    async with (
        Simulator(speed=1.0, seed=9, document=openapi) as sim,
        OrchestratorClient(sim.base_url, sim.token) as client,
    ):
        submitted = await client.submit(template(client, gpt2(), "job-cancel"), wait=0)
        await client.cancel(submitted.id)
        workflow = await client.get(submitted.id)
        assert client.stats["cancel"] == 1
    assert workflow.status == S.CANCELED
    assert workflow.charged() == 0  # canceled before it ran: refunded


# -- errors ------------------------------------------------------------------------------------


async def test_400_is_validation_failed_with_the_field_names(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    step = gpt2().step()
    bad = {
        "$type": "imageGen",
        "input": {**step["input"], "model": "gpt-image-1", "size": "1024x1024", "style": "vivid"},
    }
    del bad["input"]["width"], bad["input"]["height"]
    with pytest.raises(ValidationFailed) as caught:
        await client.submit(client.template([bad], "job-400"))
    assert "steps[0].input.style" in caught.value.fields
    assert caught.value.fields["steps[0].input.style"] == ["style is not a valid property"]
    assert "steps[0].input.style" in str(caught.value)
    assert caught.value.status == 400
    assert simulator.requests["submit"] == 1  # a 400 is not retried
    assert simulator.submissions == []


async def test_400_for_a_width_off_the_16_grid(client: OrchestratorClient) -> None:
    step = gpt2().step()
    step["input"]["width"] = 1000
    with pytest.raises(ValidationFailed) as caught:
        await client.submit(client.template([step], "job-w"))
    assert list(caught.value.fields) == ["steps[0].input.width"]


async def test_401_is_unauthorized(simulator: Simulator, sleeps: RecordingSleep) -> None:
    async with OrchestratorClient(simulator.base_url, "wrong-token", sleep=sleeps) as client:
        with pytest.raises(Unauthorized):
            await client.submit(client.template([gpt2().step()], "job-401"))
    async with OrchestratorClient(simulator.base_url, None, sleep=sleeps) as client:
        with pytest.raises(Unauthorized):
            await client.get("wf_anything")
    assert sleeps.delays == []  # not retried


async def test_403_is_forbidden(client: OrchestratorClient, simulator: Simulator) -> None:
    simulator.fault(403)
    with pytest.raises(Forbidden) as caught:
        await client.submit(template(client, gpt2(), "job-403"))
    assert caught.value.status == 403
    assert simulator.requests["submit"] == 1


async def test_404_is_not_found(client: OrchestratorClient) -> None:
    with pytest.raises(NotFound):
        await client.get("wf_does_not_exist")
    with pytest.raises(NotFound):
        await client.cancel("wf_does_not_exist")


async def test_429_honours_retry_after(
    client: OrchestratorClient, simulator: Simulator, sleeps: RecordingSleep
) -> None:
    simulator.fault(429, retry_after=7)
    workflow = await client.submit(template(client, gpt2(), "job-429"), wait=0)
    assert workflow.id is not None
    assert len(sleeps.delays) == 1
    assert sleeps.delays[0] >= 7
    assert simulator.requests["submit"] == 2 and len(simulator.submissions) == 1


async def test_retry_after_above_the_backoff_cap_still_wins(
    client: OrchestratorClient, simulator: Simulator, sleeps: RecordingSleep
) -> None:
    assert client.retry_max_delay < 45
    simulator.fault(503, retry_after=45, route="get")
    submitted = await client.submit(template(client, gpt2(), "job-ra"), wait=0)
    await client.get(submitted.id)
    assert len(sleeps.delays) == 1 and sleeps.delays[0] >= 45


async def test_retry_after_as_an_http_date(sleeps: RecordingSleep) -> None:
    calls = []

    async def busy(request: web.Request) -> web.Response:
        calls.append(request)
        if len(calls) == 1:
            when = datetime.now(UTC) + timedelta(seconds=20)
            return web.Response(
                status=503, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}
            )
        return web.json_response({"id": "wf_1", "status": "succeeded"})

    async with (
        serve([web.get("/v2/consumer/workflows/{id}", busy)]) as (url,),
        OrchestratorClient(url, "tiny-server-token", sleep=sleeps) as client,
    ):
        workflow = await client.get("wf_1")
    assert workflow.status == S.SUCCEEDED
    assert 15 <= sleeps.delays[0] <= 21


async def test_500_is_retried_then_succeeds(
    client: OrchestratorClient, simulator: Simulator, sleeps: RecordingSleep
) -> None:
    simulator.fault(500, times=2)
    workflow = await client.submit(template(client, gpt2(), "job-500"), wait=300)
    assert workflow.status == S.SUCCEEDED
    assert len(sleeps.delays) == 2
    assert client.stats["submit"] == 3 == simulator.requests["submit"]
    assert len(simulator.submissions) == 1


async def test_persistent_503_gives_up_after_max_retries_plus_one(
    client: OrchestratorClient, simulator: Simulator, sleeps: RecordingSleep
) -> None:
    simulator.fault(503, times=100)
    with pytest.raises(Unavailable) as caught:
        await client.submit(template(client, gpt2(), "job-503"))
    tries = client.max_retries + 1
    assert simulator.requests["submit"] == tries == client.stats["submit"]
    assert len(sleeps.delays) == client.max_retries
    assert f"gave up after {tries} tries" in str(caught.value)
    assert simulator.submissions == []


async def test_backoff_grows_stays_under_the_cap_and_jitters(simulator: Simulator) -> None:
    delays_by_seed = []
    for seed in (1, 2):
        sleeps = RecordingSleep()
        simulator.fault(503, times=100, route="get")
        async with OrchestratorClient(
            simulator.base_url,
            simulator.token,
            max_retries=7,
            retry_max_delay=3.0,
            sleep=sleeps,
            rng=random.Random(seed),
        ) as client:
            with pytest.raises(Unavailable):
                await client.get("wf_x")
        delays = sleeps.delays
        assert len(delays) == 7
        assert all(0 < d <= 3.0 for d in delays), delays
        # Exponential until the cap: each of the first delays is at least the one before.
        assert delays[0] <= delays[1] <= delays[2] <= 3.0
        assert delays[2] > 2 * delays[0]
        assert max(delays) > 1.5  # the later ones reach the top half of the cap
        delays_by_seed.append(delays)
        simulator._faults.clear()
    assert delays_by_seed[0] != delays_by_seed[1]  # jitter: not a fixed schedule


async def test_a_server_that_never_answers_times_out_to_unavailable(
    sleeps: RecordingSleep,
) -> None:
    hold = asyncio.Event()
    accepted = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await hold.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with OrchestratorClient(
            f"http://127.0.0.1:{port}",
            "tiny-server-token",
            timeout=0.3,
            max_retries=1,
            sleep=sleeps,
        ) as client:
            with pytest.raises(Unavailable) as caught:
                await client.get("wf_1")
    finally:
        hold.set()
        server.close()
        await server.wait_closed()
    assert "did not answer in time" in str(caught.value)
    assert len(accepted) == 2 and len(sleeps.delays) == 1


async def test_an_answer_that_drips_forever_is_given_up_on(sleeps: RecordingSleep) -> None:
    """Each byte within the read timeout, the answer never ends: without a deadline for the
    whole answer a job would follow its workflow for ever, its Buzz held, cancel unheard."""
    dripped = asyncio.Event()

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                await response.write(b" ")
                dripped.set()
                await asyncio.sleep(0.05)
        return response

    async with (
        serve([web.get("/v2/consumer/workflows/{id}", drip)]) as (url,),
        OrchestratorClient(
            url, "tiny-server-token", timeout=0.5, max_retries=1, sleep=sleeps
        ) as client,
    ):
        async with asyncio.timeout(30):  # a guard for the hang, not a timing
            with pytest.raises(Unavailable, match="gave up after 2 tries") as caught:
                await client.get("wf_1")
    assert dripped.is_set() and len(sleeps.delays) == 1
    assert caught.value.maybe_accepted is True


async def test_an_answer_that_inflates_past_the_cap_is_not_read_whole(
    sleeps: RecordingSleep,
) -> None:
    """A small gzip body may decode to gigabytes: the cap counts the decoded bytes."""
    inflated = b'{"id": "wf_1", "status": "succeeded", "padding": "' + b"a" * 4_000_000 + b'"}'
    squeezed = gzip.compress(inflated)

    async def bomb(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=squeezed, headers=headers)

    async with (
        serve([web.get("/v2/consumer/workflows/{id}", bomb)]) as (url,),
        OrchestratorClient(
            url, "tiny-server-token", max_retries=1, max_answer_bytes=1_000_000, sleep=sleeps
        ) as client,
    ):
        with pytest.raises(Unavailable, match="over the 1,000,000 byte cap") as caught:
            await client.get("wf_1")
    assert caught.value.maybe_accepted is True and len(squeezed) < 100_000


# A gzip header, then bytes that are not deflate data: the answer cannot be decoded.
CORRUPT_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"not deflate data" * 8


async def _corrupt_gzip(request: web.Request) -> web.Response:
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    return web.Response(body=CORRUPT_GZIP, headers=headers)


@pytest.mark.parametrize("call", ["get", "blob"])
async def test_an_answer_whose_compression_is_broken_is_retried(
    sleeps: RecordingSleep, call: str
) -> None:
    """A proxy that mangles a gzip body: one more broken answer, retried, not an exception
    of the HTTP library escaping every caller."""
    routes = [
        web.get("/v2/consumer/workflows/{id}", _corrupt_gzip),
        web.get("/blob", _corrupt_gzip),
    ]
    async with (
        serve(routes) as (url,),
        OrchestratorClient(url, "tiny-server-token", max_retries=1, sleep=sleeps) as client,
    ):
        with pytest.raises(Unavailable, match="gave up after 2 tries"):
            if call == "get":
                await client.get("wf_1")
            else:
                await client.download_blob(f"{url}/blob")
    assert len(sleeps.delays) == 1


async def test_a_large_submit_body_gets_time_to_be_sent(sleeps: RecordingSleep) -> None:
    """A submit with its sources inline (data URLs, when uploads failed) is megabytes of JSON:
    the answer's deadline counts the time such a body takes to go up, as for raw uploads. Here
    the exchange takes 1.5 s (bytes keep coming, each within the read timeout of 0.2 s) for
    400 KB: the whole-answer deadline without the body's allowance is 0.8 s."""

    async def slow_reader(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(30):
            await response.write(b" ")
            await asyncio.sleep(0.05)
        await response.write(b'{"id": "wf_big", "status": "succeeded"}')
        await response.write_eof()
        return response

    async with (
        serve([web.post("/v2/consumer/workflows", slow_reader)]) as (url,),
        OrchestratorClient(
            url, "tiny-server-token", timeout=0.2, max_retries=0, sleep=sleeps
        ) as client,
    ):
        step = {"$type": "imageGen", "input": {"engine": "openai", "images": ["a" * 400_000]}}
        workflow = await client.submit(client.template([step], "job-big"))
    assert workflow.id == "wf_big" and sleeps.delays == []


async def test_a_closed_port_is_unavailable(sleeps: RecordingSleep) -> None:
    port = closed_port()
    async with OrchestratorClient(
        f"http://127.0.0.1:{port}", "tiny-server-token", max_retries=2, sleep=sleeps
    ) as client:
        with pytest.raises(Unavailable) as caught:
            await client.submit(client.template([gpt2().step()], "job-closed"))
    assert "cannot reach the orchestrator" in str(caught.value)
    assert client.stats["submit"] == 3 and len(sleeps.delays) == 2


async def test_other_4xx_is_an_orchestrator_error_not_retried(sleeps: RecordingSleep) -> None:
    async def teapot(request: web.Request) -> web.Response:
        return web.json_response({"title": "I'm a teapot", "detail": "short and stout"}, status=418)

    async with (
        serve([web.get("/v2/consumer/workflows/{id}", teapot)]) as (url,),
        OrchestratorClient(url, "tiny-server-token", sleep=sleeps) as client,
    ):
        with pytest.raises(OrchestratorError) as caught:
            await client.get("wf_1")
    assert caught.value.status == 418
    assert "short and stout" in str(caught.value)
    assert sleeps.delays == []


async def test_an_error_body_nested_deeper_than_a_parser_goes_is_still_the_error(
    sleeps: RecordingSleep,
) -> None:
    async def refused(request: web.Request) -> web.Response:
        return web.Response(text="[" * 100_000, status=400, content_type="application/json")

    async with (
        serve([web.get("/v2/consumer/workflows/{id}", refused)]) as (url,),
        OrchestratorClient(url, "tiny-server-token", sleep=sleeps) as client,
    ):
        with pytest.raises(ValidationFailed, match="refused the request"):
            await client.get("wf_1")
    assert sleeps.delays == []


# -- the token never leaks -------------------------------------------------------------------

TOKEN = "tok-ZXQ7-very-distinctive-9f3b2a"


async def _echo(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    kind = request.match_info.get("id", "submit")
    if kind == "e500":
        return web.Response(status=500, text=f"boom, you sent {auth}")
    if kind in ("e403", "e404", "e418"):
        status = int(kind[1:])
        return web.json_response({"title": auth, "detail": f"header was {auth}"}, status=status)
    body = {"title": auth, "detail": auth, "errors": {"auth": [f"you sent {auth}"], auth: ["x"]}}
    return web.json_response(body, status=400)


async def test_the_token_never_reaches_logs_errors_or_reprs(
    caplog: pytest.LogCaptureFixture, sleeps: RecordingSleep
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "bot"):
        caplog.set_level(logging.DEBUG, logger=name)
    routes = [
        web.post("/v2/consumer/workflows", _echo),
        web.get("/v2/consumer/workflows/{id}", _echo),
        web.put("/v2/consumer/workflows/{id}", _echo),
        web.get("/blobs/{id}", _echo),
    ]
    errors: list[BaseException] = []
    async with serve(routes) as (url,):
        client = OrchestratorClient(url, SecretStr(TOKEN), max_retries=2, sleep=sleeps)
        async with client:
            calls: list[Callable[[], Awaitable[Any]]] = [
                lambda: client.submit(client.template([gpt2().step()], "job-secret")),
                lambda: client.get("e500"),
                lambda: client.get("e403"),
                lambda: client.get("e404"),
                lambda: client.get("e418"),
                lambda: client.cancel("e403"),
                lambda: client.download_blob(f"{url}/blobs/e404"),
                lambda: client.download_blob(f"{url}/blobs/e500"),
            ]
            for call in calls:
                with pytest.raises(OrchestratorError) as caught:
                    await call()
                errors.append(caught.value)
            assert TOKEN not in repr(client) and TOKEN not in str(client)
    # The echo really carried the token back: the redaction is what kept it out.
    kinds = [type(e) for e in errors]
    assert kinds == [
        ValidationFailed,
        Unavailable,
        Forbidden,
        NotFound,
        OrchestratorError,
        Forbidden,
        BlobExpired,  # a blob URL that is refused is one to refresh, not a missing workflow
        Unavailable,  # blob 5xx are retried like API calls
    ]
    assert "Bearer ***" in str(errors[0])
    assert "***" in str(errors[2]) and "***" in str(errors[4])
    for err in errors:
        texts = [str(err), repr(err), *map(str, err.args)]
        if isinstance(err, ValidationFailed):
            texts += [f"{k}: {v}" for k, v in err.fields.items()]
        for text in texts:
            assert TOKEN not in text, text
    assert caplog.records, "expected the client and httpx to log something"
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert any(r.name == "bot.civitai.client" for r in caplog.records)  # retry warnings
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), record.name
    assert TOKEN not in caplog.text


# -- blobs -------------------------------------------------------------------------------------


async def _finished(client: OrchestratorClient, external_id: str, **options: Any):
    workflow = await client.submit(template(client, gpt2(**options), external_id), wait=300)
    assert workflow.status == S.SUCCEEDED
    return workflow


async def test_blob_download(client: OrchestratorClient) -> None:
    workflow = await _finished(client, "job-blob", format="png")
    data = await client.download_blob(workflow.images()[0].url)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.stats["blob"] == 1


async def test_blob_via_get_blob_redirect(client: OrchestratorClient, simulator: Simulator) -> None:
    workflow = await _finished(client, "job-getblob", format="webp")
    blob_id = workflow.images()[0].id
    data = await client.download_blob(f"{simulator.base_url}/v2/consumer/blobs/{blob_id}")
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert client.stats["blob"] == 2  # the redirect, then the content


async def test_blob_over_the_declared_size_cap_is_refused(client: OrchestratorClient) -> None:
    workflow = await _finished(client, "job-cap")
    with pytest.raises(BlobRefused, match="byte cap"):
        await client.download_blob(workflow.images()[0].url, max_bytes=1000)


async def test_blob_over_the_cap_while_streaming_is_refused(sleeps: RecordingSleep) -> None:
    sent = []

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()  # no Content-Length: only counting can tell
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 1024)
            sent.append(1024)
        await response.write_eof()
        return response

    async with (
        serve([web.get("/blob", chunked)]) as (url,),
        OrchestratorClient(url, "tiny-server-token", sleep=sleeps) as client,
    ):
        assert len(await client.download_blob(f"{url}/blob")) == 64 * 1024
        with pytest.raises(BlobRefused, match="over the 10,000 byte cap"):
            await client.download_blob(f"{url}/blob", max_bytes=10_000)


async def test_a_blob_that_drips_forever_is_given_up_on(sleeps: RecordingSleep) -> None:
    """Each byte comes within the read timeout, the body never ends: without a deadline for the
    whole download, a delivery would wait on it for ever (its own deadline is never reached)."""
    dripped = asyncio.Event()

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                await response.write(b"x")
                dripped.set()
                await asyncio.sleep(0.05)
        return response

    async with (
        serve([web.get("/blob", drip)]) as (url,),
        OrchestratorClient(
            url, "tiny-server-token", timeout=0.5, max_retries=1, sleep=sleeps
        ) as client,
    ):
        async with asyncio.timeout(30):  # a guard for the hang, not a timing
            with pytest.raises(Unavailable, match="gave up after 2 tries"):
                await client.download_blob(f"{url}/blob")
    assert dripped.is_set() and len(sleeps.delays) == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/blob.png",
        "https://civitai.com.evil.example/blob.png",
        "http://image.civitai.com/blob.png",  # signed blobs only over https
        "ftp://image.civitai.com/blob.png",
    ],
)
async def test_blob_from_a_disallowed_host_is_refused(url: str, sleeps: RecordingSleep) -> None:
    async with OrchestratorClient(
        "http://127.0.0.1:9",
        "tiny-server-token",
        blob_hosts=["civitai.com", "*.civitai.com"],
        sleep=sleeps,
    ) as client:
        with pytest.raises(BlobRefused):
            await client.download_blob(url)
        assert client.stats["blob"] == 0  # refused before any request


async def test_expired_signed_blob_url_is_an_error(openapi: OpenApiDocument) -> None:
    async with (
        Simulator(speed=0.01, seed=5, blob_ttl=0, document=openapi) as sim,
        OrchestratorClient(sim.base_url, sim.token) as client,
    ):
        workflow = await _finished(client, "job-expired")
        with pytest.raises(BlobExpired, match="expired"):
            await client.download_blob(workflow.images()[0].url)


async def test_blob_5xx_and_429_are_retried_with_backoff_then_succeed(
    client: OrchestratorClient, simulator: Simulator, sleeps: RecordingSleep
) -> None:
    workflow = await _finished(client, "job-blob-retry", format="png")
    before = len(sleeps.delays)
    simulator.fault(503, times=2, route="blob")
    simulator.fault(429, times=1, retry_after=5, route="blob")
    data = await client.download_blob(workflow.images()[0].url)
    assert data.startswith(b"\x89PNG")
    delays = sleeps.delays[before:]
    assert len(delays) == 3 and max(delays) >= 5  # Retry-After honoured on the 429


async def test_blob_store_down_for_good_is_unavailable_after_the_retries(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    workflow = await _finished(client, "job-blob-down")
    simulator.fault(502, times=100, route="blob")
    with pytest.raises(Unavailable, match="blob store answered 502"):
        await client.download_blob(workflow.images()[0].url)
    assert client.stats["blob"] == 1 + client.max_retries


@pytest.mark.parametrize("body", [b"{not json", b"<html>bad gateway</html>", b'{"id": 5}'])
async def test_a_malformed_answer_is_retried_like_a_5xx(
    client: OrchestratorClient, simulator: Simulator, sleeps: RecordingSleep, body: bytes
) -> None:
    simulator.fault(200, times=2, route="submit", body=body)
    workflow = await client.submit(template(client, gpt2(), f"job-malformed-{len(body)}"))
    assert workflow.id and workflow.id.startswith("wf_")
    assert len(sleeps.delays) == 2
    simulator.fault(200, times=100, route="get", body=body)
    with pytest.raises(Unavailable, match="not a workflow") as caught:
        await client.get(workflow.id)
    assert caught.value.maybe_accepted


async def test_a_lost_submit_answer_is_retried_and_finds_the_same_workflow(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.lose_answer(route="submit")
    workflow = await client.submit(template(client, gpt2(), "job-lost-answer"))
    assert len(simulator.workflows) == 1 and workflow.id in simulator.workflows


async def test_the_token_is_not_sent_to_another_host(sleeps: RecordingSleep) -> None:
    seen: list[tuple[int, str | None]] = []

    def port_of(request: web.Request) -> int:
        return request.transport.get_extra_info("sockname")[1]

    async def blob(request: web.Request) -> web.Response:
        seen.append((port_of(request), request.headers.get("Authorization")))
        return web.Response(body=b"image-bytes")

    async def redirect(request: web.Request) -> web.Response:
        seen.append((port_of(request), request.headers.get("Authorization")))
        raise web.HTTPTemporaryRedirect(request.query["to"])

    routes = [web.get("/blob", blob), web.get("/redirect", redirect)]
    async with serve(routes, sites=2) as (orchestrator, storage):
        port_o, port_s = (int(u.rsplit(":", 1)[1]) for u in (orchestrator, storage))
        async with OrchestratorClient(
            orchestrator, TOKEN, blob_hosts=["127.0.0.1"], sleep=sleeps
        ) as client:
            # Same host: the token goes along (this proves the server would see it).
            assert await client.download_blob(f"{orchestrator}/blob") == b"image-bytes"
            # Another host, directly and after a redirect from the orchestrator: no token.
            assert await client.download_blob(f"{storage}/blob") == b"image-bytes"
            target = f"{storage}/blob"
            assert (
                await client.download_blob(f"{orchestrator}/redirect?to={target}") == b"image-bytes"
            )
        assert seen == [
            (port_o, f"Bearer {TOKEN}"),
            (port_s, None),
            (port_o, f"Bearer {TOKEN}"),
            (port_s, None),
        ]
        # A redirect to a host not on the list is refused before anything is sent there.
        seen.clear()
        async with OrchestratorClient(orchestrator, TOKEN, blob_hosts=[], sleep=sleeps) as client:
            with pytest.raises(BlobRefused):
                await client.download_blob(f"{orchestrator}/redirect?to={storage}/blob")
        assert [port for port, _ in seen] == [port_o]
