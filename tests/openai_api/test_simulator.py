"""The OpenAI simulator on its own: auth, OpenAI-style refusals, the event stream, scripting."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from bot.openai_api.simulator import OUTCOMES, OpenAISimulator, Outcome
from bot.openai_api.sse import SSEDecoder
from tests.openai_api.conftest import jpeg, opened, png


async def post(
    sim: OpenAISimulator, body: dict[str, Any], *, key: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or sim.api_key}"}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{sim.base_url}/images/generations", json=body, headers=headers)


async def post_edit(
    sim: OpenAISimulator, fields: dict[str, str], files: list[tuple[str, tuple[str, bytes, str]]]
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(
            f"{sim.base_url}/images/edits", data=fields, files=files, headers=headers
        )


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_a_wrong_or_missing_key_is_401(sim: OpenAISimulator) -> None:
    response = await post(sim, {"model": "gpt-image-1", "prompt": "x"}, key="sk-nope-nope-nope")
    assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
    async with httpx.AsyncClient() as http:
        bare = await http.post(f"{sim.base_url}/images/generations", json={})
    assert bare.status_code == 401 and not sim.jobs


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "gpt-image-9", "prompt": "x"}, 404, None, "model_not_found"),
        (
            {"model": "gpt-image-1", "prompt": "x", "style": "vivid"},
            400,
            "style",
            "unknown_parameter",
        ),
        (
            {"model": "gpt-image-1", "prompt": "x", "response_format": "url"},
            400,
            "response_format",
            "unknown_parameter",
        ),
        (
            {"model": "dall-e-3", "prompt": "x", "output_format": "png"},
            400,
            "output_format",
            "unknown_parameter",
        ),
        ({"model": "dall-e-3", "prompt": "x", "n": 2}, 400, "n", "invalid_value"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, 400, "prompt", "string_above_max_length"),
        ({"model": "gpt-image-2", "prompt": "x", "size": "1000x1000"}, 400, "size", "invalid_size"),
        (
            {"model": "gpt-image-1.5", "prompt": "x", "size": "2048x2048"},
            400,
            "size",
            "invalid_value",
        ),
        (
            {"model": "gpt-image-1", "prompt": "x", "partial_images": 4},
            400,
            "partial_images",
            "integer_out_of_range",
        ),
        ({"model": "dall-e-2", "prompt": "x", "stream": True}, 400, "stream", "invalid_value"),
        (
            {
                "model": "gpt-image-1",
                "prompt": "x",
                "background": "transparent",
                "output_format": "jpeg",
            },
            400,
            "background",
            "invalid_value",
        ),
        ({"model": "gpt-image-1"}, 400, "prompt", "invalid_value"),
    ],
)
async def test_refusals_look_like_openais(
    sim: OpenAISimulator, body: dict[str, Any], status: int, param: str | None, code: str
) -> None:
    response = await post(sim, body)
    assert response.status_code == status
    error = error_of(response)
    assert (error["param"], error["code"]) == (param, code)
    assert not sim.jobs


async def test_a_stream_has_the_previews_then_the_completed_event_with_usage(
    sim: OpenAISimulator,
) -> None:
    body = {
        "model": "gpt-image-1",
        "prompt": "a bay",
        "stream": True,
        "partial_images": 3,
        "quality": "high",
    }
    response = await post(sim, body)
    assert response.headers["content-type"].startswith("text/event-stream")
    decoder = SSEDecoder(50_000_000)
    events = decoder.feed(response.content) + decoder.close()
    kinds = [e.event for e in events]
    assert kinds == ["image_generation.partial_image"] * 3 + ["image_generation.completed"]
    payloads = [json.loads(e.data) for e in events]
    assert [p["partial_image_index"] for p in payloads[:3]] == [0, 1, 2]
    assert all(p["type"] == e.event for p, e in zip(payloads, events, strict=True))
    final = payloads[-1]
    assert opened(base64.b64decode(final["b64_json"])).format == "PNG"  # OpenAI's default
    assert final["size"] == "1024x1024" and final["output_format"] == "png"
    assert final["usage"]["output_tokens"] == 4160 + 3 * 100  # seed 004's table and previews


async def test_edit_validation_masks_and_sources(sim: OpenAISimulator) -> None:
    fields = {"model": "gpt-image-1", "prompt": "add a moon"}
    source = ("image[]", ("a.png", png(100, 60), "image/png"))
    opaque_mask = ("mask", ("m.png", png(100, 60), "image/png"))
    wrong_size = ("mask", ("m.png", png(50, 50, alpha=True), "image/png"))
    good_mask = ("mask", ("m.png", png(100, 60, alpha=True), "image/png"))
    assert error_of(await post_edit(sim, fields, [opaque_mask]))["param"] == "image"
    assert "alpha" in error_of(await post_edit(sim, fields, [source, opaque_mask]))["message"]
    assert "same size" in error_of(await post_edit(sim, fields, [source, wrong_size]))["message"]
    not_image = ("image[]", ("a.png", b"not an image", "image/png"))
    assert error_of(await post_edit(sim, fields, [not_image]))["code"] == "invalid_image_format"
    d2 = {"model": "dall-e-2", "prompt": "x"}
    jpeg_source = ("image", ("a.jpg", jpeg(64, 64), "image/jpeg"))
    assert "square PNG" in error_of(await post_edit(sim, d2, [jpeg_source]))["message"]
    d3 = {"model": "dall-e-3", "prompt": "x"}
    assert error_of(await post_edit(sim, d3, [source]))["param"] == "model"
    response = await post_edit(sim, {**fields, "response_format": "b64_json"}, [source, good_mask])
    assert response.status_code == 400  # GPT models refuse response_format on edits too
    response = await post_edit(sim, {**fields, "moderation": "low"}, [source, good_mask])
    assert error_of(response)["code"] == "unknown_parameter"  # a generations-only field
    response = await post_edit(sim, fields, [source, good_mask])
    assert response.status_code == 200
    # size auto (the default) follows the first source: 100x60 is nearest to 1536x1024.
    assert response.json()["size"] == "1536x1024"


async def test_dall_e_answers_a_url_unless_asked_for_base64(sim: OpenAISimulator) -> None:
    response = await post(sim, {"model": "dall-e-2", "prompt": "x", "size": "256x256"})
    url = response.json()["data"][0]["url"]
    async with httpx.AsyncClient() as http:
        image = await http.get(url)
    assert opened(image.content).size == (256, 256)


async def test_what_it_received_is_kept_without_the_key(sim: OpenAISimulator) -> None:
    await post(sim, {"model": "gpt-image-1", "prompt": "x", "user": "u-1"})
    received = sim.received[-1]
    assert received.fields["user"] == "u-1" and received.route == "generations"
    assert "authorization" not in {k.lower() for k in received.headers}
    assert sim.requests["generations"] == 1


async def test_scripted_outcomes_by_prompt_and_in_order(sim: OpenAISimulator) -> None:
    sim.script("server_error", status=502, retry_after=3, times=2)
    sim.script("moderation_blocked", prompt="forbidden fruit")
    first = await post(sim, {"model": "gpt-image-1", "prompt": "forbidden fruit bowl"})
    assert error_of(first)["code"] == "moderation_blocked"
    for _ in range(2):
        failed = await post(sim, {"model": "gpt-image-1", "prompt": "x"})
        assert failed.status_code == 502 and failed.headers["Retry-After"] == "3"
    assert (await post(sim, {"model": "gpt-image-1", "prompt": "x"})).status_code == 200
    marked = await post(sim, {"model": "dall-e-3", "prompt": "[sim:content_policy_violation]"})
    assert error_of(marked)["code"] == "content_policy_violation"


def test_unknown_outcomes_are_refused() -> None:
    assert "break" in OUTCOMES
    with pytest.raises(ValueError):
        Outcome("explode")
