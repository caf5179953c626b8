"""The official `openai` SDK against the simulator: the simulator speaks the real wire format.

And the bot's own client sends what the SDK sends for the same request, so passing the
simulator means passing OpenAI's parser too.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import openai
import pytest
from openai import AsyncOpenAI

from bot.catalog import RequestOptions
from bot.catalog.names import Operation
from bot.openai_api.client import OpenAIImagesClient, Upload
from bot.openai_api.pricing import PriceTable
from bot.openai_api.request import build_openai_request
from bot.openai_api.simulator import OpenAISimulator
from tests.openai_api.conftest import opened, png


@pytest.fixture
async def sdk(sim: OpenAISimulator) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def test_a_streamed_generation_parses_into_the_sdks_events(sdk: AsyncOpenAI) -> None:
    stream = await sdk.images.generate(
        model="gpt-image-1.5",
        prompt="a lantern in fog",
        stream=True,
        partial_images=2,
        size="1024x1536",
        quality="medium",
        output_format="jpeg",
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]  # type: ignore[union-attr]
    final = events[-1]
    assert final.type == "image_generation.completed"
    assert opened(base64.b64decode(final.b64_json)).format == "JPEG"
    assert (final.size, final.quality, final.output_format) == ("1024x1536", "medium", "jpeg")
    assert final.usage.output_tokens == 1584 + 2 * 100
    assert final.usage.input_tokens_details.text_tokens > 0


async def test_a_streamed_edit_with_several_images_and_a_mask(
    sdk: AsyncOpenAI, sim: OpenAISimulator
) -> None:
    stream = await sdk.images.edit(
        model="gpt-image-1",
        image=[("a.png", png(120, 80), "image/png"), ("b.png", png(40, 40), "image/png")],
        mask=("mask.png", png(120, 80, alpha=True), "image/png"),
        prompt="put a hat on it",
        stream=True,
        partial_images=1,
        input_fidelity="high",
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert events[-1].usage.input_tokens_details.image_tokens > 0  # type: ignore[union-attr]
    assert [f.name for f in sim.received[-1].files] == ["image[]", "image[]", "mask"]


async def test_a_plain_json_answer_parses_into_images_response(sdk: AsyncOpenAI) -> None:
    answer = await sdk.images.generate(
        model="dall-e-3", prompt="a castle", response_format="b64_json", size="1024x1792"
    )
    assert answer.data is not None and answer.data[0].revised_prompt
    assert answer.data[0].b64_json is not None
    assert opened(base64.b64decode(answer.data[0].b64_json)).format == "PNG"
    gpt = await sdk.images.generate(model="gpt-image-1", prompt="a castle", n=2)
    assert gpt.data is not None and len(gpt.data) == 2
    assert gpt.usage is not None and gpt.usage.output_tokens == 2 * 1056  # auto → medium


async def test_refusals_are_the_sdks_typed_errors(sdk: AsyncOpenAI, sim: OpenAISimulator) -> None:
    sim.script("moderation_blocked")
    with pytest.raises(openai.BadRequestError) as blocked:
        await sdk.images.generate(model="gpt-image-1", prompt="x")
    assert blocked.value.code == "moderation_blocked"
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.images.generate(model="gpt-image-7", prompt="x")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.images.generate(model="gpt-image-2", prompt="x", size="1000x1000")
    assert bad.value.param == "size"
    wrong = AsyncOpenAI(base_url=sim.base_url, api_key="sk-not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.images.generate(model="gpt-image-1", prompt="x")
    await wrong.close()


async def test_the_bots_client_sends_what_the_sdk_sends(
    sdk: AsyncOpenAI, sim: OpenAISimulator, client: OpenAIImagesClient
) -> None:
    request = build_openai_request(
        "gpt-image-1",
        Operation.EDIT,
        RequestOptions(prompt="a fox in a hat", images=("a", "b"), mask="m", quality="low"),
        prices=PriceTable(),
        user="u-compat",
        input_size=(120, 80),
    )
    sources = [png(120, 80), png(40, 40)]
    mask = png(120, 80, alpha=True)
    await client.edit(
        request.fields,
        [Upload(data) for data in sources],
        Upload(mask),
        image_field=request.image_field,
    )
    ours = sim.received[-1]
    stream = await sdk.images.edit(
        image=[(f"{i}.png", data, "image/png") for i, data in enumerate(sources)],
        mask=("mask.png", mask, "image/png"),
        **request.fields,
    )
    async for _ in stream:
        pass
    theirs = sim.received[-1]
    assert ours.fields == theirs.fields  # same names, same values once typed
    assert [(f.name, f.content_type, f.data) for f in ours.files] == [
        (f.name, f.content_type, f.data) for f in theirs.files
    ]

    body = build_openai_request(
        "gpt-image-2",
        Operation.CREATE,
        RequestOptions(prompt="a fox", size="1536x1024"),
        prices=PriceTable(),
        user="u-compat",
    ).fields
    await client.generate(body)
    ours_json = sim.received[-1].fields
    stream = await sdk.images.generate(**body)
    async for _ in stream:
        pass
    assert ours_json == sim.received[-1].fields
