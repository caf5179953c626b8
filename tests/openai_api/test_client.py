"""The OpenAI lane's client against the simulator over real HTTP: streams, errors, retries."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from bot.catalog import RequestOptions
from bot.catalog.names import Operation
from bot.openai_api.client import OpenAIImagesClient, Upload
from bot.openai_api.errors import (
    AuthFailed,
    BadResponse,
    Blocked,
    InvalidRequest,
    ModelUnavailable,
    OpenAIError,
    QuotaExhausted,
    Unavailable,
)
from bot.openai_api.identity import user_hash
from bot.openai_api.pricing import PriceTable
from bot.openai_api.request import OpenAIRequest, build_openai_request
from bot.openai_api.results import PartialImage
from bot.openai_api.simulator import OpenAISimulator
from tests.conftest import RecordingSleep
from tests.openai_api.conftest import FAST, jpeg, opened, png

USER = user_hash("test-salt", 1001, 2002)


def request(
    model: str = "gpt-image-1.5", operation: Operation = Operation.CREATE, **options: Any
) -> OpenAIRequest:
    input_size = options.pop("input_size", None)
    return build_openai_request(
        model,
        operation,
        RequestOptions(prompt=options.pop("prompt", "a red kite over dunes"), **options),
        prices=PriceTable(),
        user=USER,
        input_size=input_size,
    )


class Previews:
    def __init__(self) -> None:
        self.seen: list[PartialImage] = []

    async def __call__(self, partial: PartialImage) -> None:
        self.seen.append(partial)

    @property
    def indices(self) -> list[tuple[int, int]]:
        return [(p.index, p.partial_index) for p in self.seen]


# -- streamed create and edit --------------------------------------------------------------------


async def test_previews_arrive_while_the_request_is_still_running(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    # The simulator holds the final image until the test has seen a preview: a client that
    # only handed previews over after reading the whole answer would never finish.
    gate = sim.hold_final_images()

    async def on_partial(partial: PartialImage) -> None:
        assert opened(partial.data).format == "JPEG"
        gate.set()

    result = await asyncio.wait_for(client.generate(request().fields, on_partial=on_partial), 10)
    assert len(result.images) == 1 and result.streamed


async def test_a_streamed_create_returns_every_image_its_previews_and_usage(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    previews = Previews()
    wanted = request(quantity=2, size="1536x1024", quality="low", format="webp")
    result = await client.generate(wanted.fields, on_partial=previews)
    assert previews.indices == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [opened(image).format for image in result.images] == ["WEBP", "WEBP"]
    assert (result.size, result.output_format, result.quality) == ("1536x1024", "webp", "low")
    # One usage per image, each with the two previews' 100 extra tokens; the total adds them.
    assert len(result.usages) == 2
    assert all(u["output_tokens"] == 400 + 2 * 100 for u in result.usages)
    assert result.usage is not None and result.usage["output_tokens"] == 2 * 600
    # What went on the wire: the hashed user and every field that decides the result.
    sent = sim.received[-1].fields
    assert sent["user"] == USER and "1001" not in sent["user"] and "2002" not in sent["user"]
    assert (sent["n"], sent["size"], sent["quality"], sent["output_format"]) == (
        2,
        "1536x1024",
        "low",
        "webp",
    )
    assert sent["stream"] is True and sent["partial_images"] == 2


async def test_a_streamed_edit_sends_one_image_part_per_source_and_the_mask(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    wanted = request(
        "gpt-image-1.5",
        Operation.EDIT,
        images=("first", "second"),
        mask="mask",
        fidelity="high",
        input_size=(300, 200),
    )
    previews = Previews()
    sources = [Upload(png(300, 200)), Upload(jpeg(80, 80), "image/jpeg")]
    result = await client.edit(
        wanted.fields,
        sources,
        Upload(png(300, 200, alpha=True)),
        on_partial=previews,
        image_field=wanted.image_field,
    )
    assert previews.indices == [(0, 0), (0, 1)]
    assert len(result.images) == 1 and result.size == "1536x1024" == wanted.size
    assert result.usage is not None and result.usage["input_tokens_details"]["image_tokens"] > 0
    received = sim.received[-1]
    assert received.route == "edits"
    assert [(f.name, f.content_type) for f in received.files] == [
        ("image[]", "image/png"),
        ("image[]", "image/jpeg"),
        ("mask", "image/png"),
    ]
    assert received.files[1].data == sources[1].data
    assert received.fields["input_fidelity"] == "high"
    assert received.fields["stream"] is True and received.fields["n"] == 1
    assert received.fields["user"] == USER


async def test_a_dall_e_2_edit_is_one_image_part_and_a_json_answer(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    wanted = request("dall-e-2", Operation.EDIT, images=("one",), mask="m", size="256x256")
    source = Upload(png(128, 128))
    result = await client.edit(
        wanted.fields, [source], Upload(png(128, 128, alpha=True)), image_field=wanted.image_field
    )
    assert [f.name for f in sim.received[-1].files] == ["image", "mask"]
    assert not result.streamed and result.usage is None
    assert opened(result.images[0]).size == (256, 256)


# -- non-streaming answers -----------------------------------------------------------------------


async def test_dall_e_3_answers_plain_json_with_its_revised_prompt(
    client: OpenAIImagesClient,
) -> None:
    previews = Previews()
    result = await client.generate(
        request("dall-e-3", size="1792x1024").fields, on_partial=previews
    )
    assert not result.streamed and previews.seen == []
    image = opened(result.images[0])
    assert image.format == "PNG" and image.size == (256, 146)  # the simulator's capped render
    assert result.revised_prompt is not None and "red kite" in result.revised_prompt


async def test_an_endpoint_that_ignores_stream_still_gives_the_images_and_usage(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    sim.script("no_stream")
    result = await client.generate(request(quantity=3).fields, on_partial=Previews())
    assert not result.streamed and len(result.images) == 3
    assert result.usage is not None and result.usage["output_tokens"] == 3 * 4160


# -- errors that are not retried -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "code"),
    [("gpt-image-1", "moderation_blocked"), ("dall-e-3", "content_policy_violation")],
)
async def test_a_moderation_refusal_is_a_block_and_is_not_retried(
    client: OpenAIImagesClient, sim: OpenAISimulator, sleeps: RecordingSleep, model: str, code: str
) -> None:
    sim.script(code)
    with pytest.raises(Blocked) as caught:
        await client.generate(request(model).fields)
    assert caught.value.code == code and caught.value.status == 400
    assert sim.requests["generations"] == 1 and sleeps.delays == []


async def test_a_block_that_arrives_mid_stream_is_a_block(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    sim.script("error_event", code="moderation_blocked")
    previews = Previews()
    with pytest.raises(Blocked):
        await client.generate(request().fields, on_partial=previews)
    assert len(previews.seen) == 2  # the previews came before the refusal


async def test_a_model_the_endpoint_does_not_serve_is_recognisable(sleeps: RecordingSleep) -> None:
    async with (
        OpenAISimulator(speed=FAST, models=["gpt-image-1"]) as sim,
        OpenAIImagesClient(sim.base_url, sim.api_key, sleep=sleeps) as client,
    ):
        with pytest.raises(ModelUnavailable) as caught:
            await client.generate(request("gpt-image-2").fields)
        assert caught.value.model == "gpt-image-2" and caught.value.code == "model_not_found"
        sim.script("model_not_found")  # deprecated and shut down: the same answer
        with pytest.raises(ModelUnavailable):
            await client.generate(request("gpt-image-1").fields)
        assert sleeps.delays == []


async def test_an_invalid_parameter_names_it(
    client: OpenAIImagesClient, sleeps: RecordingSleep
) -> None:
    body = {**request("gpt-image-1").fields, "size": "999x999"}
    with pytest.raises(InvalidRequest) as caught:
        await client.generate(body)
    assert caught.value.param == "size" and caught.value.status == 400
    assert sleeps.delays == []


async def test_quota_exhausted_is_an_operator_problem_not_a_retry(
    client: OpenAIImagesClient, sim: OpenAISimulator, sleeps: RecordingSleep
) -> None:
    sim.script("insufficient_quota")
    with pytest.raises(QuotaExhausted):
        await client.generate(request().fields)
    assert sleeps.delays == []


async def test_403_is_auth_failed(client: OpenAIImagesClient, sim: OpenAISimulator) -> None:
    sim.script("forbidden")
    with pytest.raises(AuthFailed) as caught:
        await client.generate(request().fields)
    assert caught.value.status == 403 and "verified" in str(caught.value)


async def test_a_wrong_key_is_auth_failed_and_the_key_shows_nowhere(
    sim: OpenAISimulator, sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-wrong-but-secret-key-9876543210"
    caplog.set_level(logging.DEBUG)
    async with OpenAIImagesClient(sim.base_url, secret, sleep=sleeps) as client:
        # The simulator, like OpenAI, quotes the key's ends in its 401 answer.
        with pytest.raises(AuthFailed) as caught:
            await client.generate(request().fields)
        shown = repr(client)
    # The same key where it is right, through retries that log and give up.
    async with OpenAISimulator(api_key=secret, speed=FAST) as own:
        own.script("server_error", times=2)
        async with OpenAIImagesClient(own.base_url, secret, sleep=sleeps, max_retries=1) as other:
            with pytest.raises(Unavailable) as unavailable:
                await other.generate(request().fields)
    assert caught.value.status == 401
    assert "retrying" in caplog.text
    for text in (str(caught.value), repr(caught.value), shown, str(unavailable.value), caplog.text):
        assert secret not in text and secret[-4:] not in text


async def test_a_proxy_page_echoing_the_key_past_300_characters_shows_none_of_it(
    sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway's plain-text 400 quotes the request's headers; the key starts before the point
    where the page is cut for the error text: no part of it may survive."""
    secret = "azk_0123456789abcdef0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    async with OpenAISimulator(api_key=secret, speed=FAST) as own:
        own.script("proxy_echo", times=10)
        async with OpenAIImagesClient(own.base_url, secret, sleep=sleeps, max_retries=1) as client:
            with pytest.raises(OpenAIError) as caught:
                await client.generate(request().fields)
    assert "Rejected by the gateway" in str(caught.value)
    for text in (str(caught.value), caplog.text):
        assert secret[:8] not in text and secret[-8:] not in text


# -- retries -------------------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after(
    client: OpenAIImagesClient, sim: OpenAISimulator, sleeps: RecordingSleep
) -> None:
    sim.script("rate_limited", retry_after=7, times=2)
    result = await client.generate(request().fields)
    assert len(result.images) == 1
    assert sim.requests["generations"] == 3
    assert len(sleeps.delays) == 2 and all(delay >= 7 for delay in sleeps.delays)


async def test_persistent_429_or_503_is_unavailable_and_surely_not_acted_on(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    sim.script("rate_limited", times=2)
    sim.script("server_error", status=503, times=2)
    with pytest.raises(Unavailable) as caught:
        await client.generate(request().fields)
    assert caught.value.maybe_accepted is False
    assert sim.requests["generations"] == 4  # max_retries=3: four tries in all


async def test_500s_that_outlast_the_retries_may_have_been_acted_on(
    client: OpenAIImagesClient, sim: OpenAISimulator, sleeps: RecordingSleep
) -> None:
    sim.script("rate_limited")
    sim.script("server_error", status=500, times=3)
    with pytest.raises(Unavailable) as caught:
        await client.generate(request().fields)
    assert caught.value.maybe_accepted is True
    assert "gave up after 4 tries" in str(caught.value)
    # Capped, jittered, growing backoff: 0.5·2^n ceilings (cap 4), each in [ceiling/2, ceiling].
    for attempt, delay in enumerate(sleeps.delays):
        ceiling = min(4.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


async def test_a_stream_broken_mid_way_is_retried_from_the_start(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    sim.script("break", after_events=3)  # two previews and the first image of two
    previews = Previews()
    result = await client.generate(request(quantity=2).fields, on_partial=previews)
    assert len(result.images) == 2 and len(result.usages) == 2
    assert sim.requests["generations"] == 2
    # The first try's previews, then the second try's from the start.
    assert previews.indices == [(0, 0), (0, 1), (0, 0), (0, 1), (1, 0), (1, 1)]


async def test_a_stream_that_keeps_breaking_is_unavailable(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    sim.script("break", after_events=1, times=4)
    with pytest.raises(Unavailable) as caught:
        await client.edit(
            request("gpt-image-1", Operation.EDIT, images=("s",)).fields, [Upload(png())]
        )
    assert caught.value.maybe_accepted is True and "stream broke" in str(caught.value)
    # Each try streamed a preview before it broke: it ran, and was billed, upstream, so it is
    # made twice at most (max_output_calls), not max_retries + 1 times.
    assert sim.requests["edits"] == 2 and caught.value.produced == 2


async def test_a_stream_that_ends_without_a_completed_image_is_retried(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    sim.script("no_completed")
    result = await client.generate(request().fields)
    assert len(result.images) == 1 and sim.requests["generations"] == 2


async def test_an_error_event_that_is_not_a_block_is_retried(
    client: OpenAIImagesClient, sim: OpenAISimulator
) -> None:
    sim.script("error_event", code="server_error")
    result = await client.generate(request().fields)
    assert len(result.images) == 1 and sim.requests["generations"] == 2


async def test_a_slow_answer_times_out_and_is_unavailable(
    sim: OpenAISimulator, sleeps: RecordingSleep
) -> None:
    sim.script("slow", delay=30, times=2)
    async with OpenAIImagesClient(
        sim.base_url, sim.api_key, timeout=0.2, max_retries=1, sleep=sleeps
    ) as client:
        with pytest.raises(Unavailable) as caught:
            await client.generate(request().fields)
    assert caught.value.maybe_accepted is True and "in time" in str(caught.value)
    assert sim.requests["generations"] == 2


async def test_a_closed_port_is_unavailable_and_nothing_was_sent(sleeps: RecordingSleep) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with OpenAIImagesClient(
        f"http://127.0.0.1:{port}/v1", "k", max_retries=2, sleep=sleeps
    ) as client:
        with pytest.raises(Unavailable) as caught:
            await client.generate(request().fields)
    assert caught.value.maybe_accepted is False and len(sleeps.delays) == 2


# -- what the client refuses to take -------------------------------------------------------------


async def test_a_final_image_that_is_not_base64_is_a_bad_response(
    client: OpenAIImagesClient, sim: OpenAISimulator, sleeps: RecordingSleep
) -> None:
    sim.script("bad_base64")
    with pytest.raises(BadResponse, match="not valid base64"):
        await client.generate(request().fields)
    sim.script("bad_base64")
    with pytest.raises(BadResponse, match="not valid base64"):
        await client.generate(request("dall-e-2").fields)
    assert sleeps.delays == []


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2"])
async def test_images_over_the_byte_cap_are_refused(sim: OpenAISimulator, model: str) -> None:
    async with OpenAIImagesClient(sim.base_url, sim.api_key, max_image_bytes=2_000) as client:
        with pytest.raises(BadResponse, match="byte cap"):
            await client.generate(request(model).fields)
    async with OpenAIImagesClient(sim.base_url, sim.api_key, max_image_bytes=2_000_000) as client:
        assert len((await client.generate(request(model).fields)).images) == 1
