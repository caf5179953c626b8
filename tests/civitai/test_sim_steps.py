"""The simulator's other step types over HTTP: upscale, background removal, prompt enhancement
and xGuard moderation — schema validation, whatif prices, charges and typed outputs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import ValidationFailed
from bot.civitai.models import (
    ImageBackgroundRemovalOutput,
    ImageUpscalerOutput,
    WorkflowStatus,
)
from bot.civitai.simulator import Outcome, Simulator
from tests.civitai.sim_helpers import (
    cutout,
    data_url,
    debits_credits,
    decode,
    enhancement,
    gen,
    moderation,
    post_steps,
    run,
    upscaler,
)

S = WorkflowStatus


# -- imageUpscaler ---------------------------------------------------------------------------


async def test_upscale_doubles_the_image_and_charges_the_recipe_price(
    client: OrchestratorClient,
) -> None:
    workflow = await run(client, [upscaler(data_url(300, 200))], "up-1")
    assert workflow.status == S.SUCCEEDED
    (blob,) = workflow.images()
    assert (blob.width, blob.height) == (600, 400)
    assert isinstance(workflow.steps[0].typed_output(), ImageUpscalerOutput)
    image = decode(await client.download_blob(blob.url))
    assert image.size == (600, 400) and image.format == "PNG"
    # 0.06 MP rounds up to 1, times 2 for one pass.
    assert workflow.charged() == 2
    assert workflow.cost is not None and workflow.cost.total == 2
    assert debits_credits(workflow) == (2, 0)


@pytest.mark.parametrize(
    ("side", "repeats", "buzz"),
    [(512, 1, 2), (1024, 1, 4), (2048, 1, 10), (1024, 2, 8), (1024, 3, 16)],
)
async def test_upscale_whatif_matches_the_recipe_table(
    client: OrchestratorClient, simulator: Simulator, side: int, repeats: int, buzz: int
) -> None:
    body = client.template([upscaler(data_url(side, side), repeats)], f"up-w-{side}-{repeats}")
    estimate = await client.submit(body, whatif=True)
    assert estimate.cost is not None and estimate.cost.total == buzz
    assert simulator.workflows == {}


async def test_upscale_of_a_generated_image_enlarges_that_image(
    client: OrchestratorClient,
) -> None:
    generated = await run(client, [gen(size="256x256")], "up-src")
    (source_blob,) = generated.images()
    source = decode(await client.download_blob(source_blob.url))
    workflow = await run(client, [upscaler(source_blob.url, 2)], "up-gen")
    (blob,) = workflow.images()
    upscaled = decode(await client.download_blob(blob.url))
    assert upscaled.size == (1024, 1024)
    # The same picture, bigger: the background colour in the corner carries over.
    before = source.convert("RGB").getpixel((2, 2))
    after = upscaled.convert("RGB").getpixel((8, 8))
    assert all(abs(a - b) <= 8 for a, b in zip(before, after, strict=True))
    assert workflow.charged() == 1 * 4


@pytest.mark.parametrize("make", [upscaler, cutout])
async def test_an_image_the_orchestrator_cannot_load_is_refused(
    http: httpx.AsyncClient, simulator: Simulator, make: Any
) -> None:
    forged = f"{simulator.base_url}/v2/consumer/blobs/content/Zm9vLjE.0000"
    for i, source in enumerate(["https://example.invalid/a.png", forged, "not base64 at all"]):
        response = await post_steps(http, [make(source)], f"bad-src-{i}")
        assert response.status_code == 400
        assert response.json()["errors"] == {"steps[0].input.image": ["image could not be loaded"]}
    assert simulator.submissions == []


# -- schema validation -------------------------------------------------------------------------

INVALID = [
    (upscaler("x", 4), "steps[0].input.numberOfRepeats", "numberOfRepeats must be ≤ 3"),
    (
        {"$type": "imageUpscaler", "input": {"image": "x", "scale": 2}},
        "steps[0].input.scale",
        "scale is not a valid property",
    ),
    (cutout("x", "jpeg"), "steps[0].input.format", "format must be one of png, webp"),
    (
        {"$type": "promptEnhancement", "input": {"prompt": "a cat"}},
        "steps[0].input.ecosystem",
        "ecosystem is required",
    ),
    (
        enhancement("a cat", temperature=1.5),
        "steps[0].input.temperature",
        "temperature must be ≤ 1",
    ),
    (
        {"$type": "xGuardModeration", "input": {"mode": "prompt", "positivePrompt": "a cat"}},
        "steps[0].input.includeReasoning",
        "includeReasoning is required",
    ),
    (
        moderation("a cat", mode="image"),
        "steps[0].input.mode",
        "mode must be one of prompt, text",
    ),
]


@pytest.mark.parametrize(("step", "path", "message"), INVALID)
async def test_templates_that_break_the_schema_get_a_400(
    http: httpx.AsyncClient, simulator: Simulator, step: dict[str, Any], path: str, message: str
) -> None:
    for params in ({}, {"whatif": "true"}):
        response = await post_steps(http, [step], "invalid", **params)
        assert response.status_code == 400
        body = response.json()
        assert body["status"] == 400 and body["title"]
        assert message in body["errors"][path]
    assert simulator.submissions == []


async def test_the_client_reads_a_400_as_validation_failed(client: OrchestratorClient) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await client.submit(client.template([cutout("x", "gif")], "invalid-cut"), wait=0)
    assert "steps[0].input.format" in caught.value.fields


# -- imageBackgroundRemoval -------------------------------------------------------------------


async def test_background_removal_returns_a_transparent_cut_out(
    client: OrchestratorClient,
) -> None:
    workflow = await run(client, [cutout(data_url(300, 200, "orange"))], "cut-1")
    assert workflow.status == S.SUCCEEDED
    assert isinstance(workflow.steps[0].typed_output(), ImageBackgroundRemovalOutput)
    (blob,) = workflow.images()
    assert (blob.width, blob.height) == (300, 200)
    image = decode(await client.download_blob(blob.url))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (300, 200)
    corners = [(0, 0), (299, 0), (0, 199), (299, 199)]
    assert all(image.getpixel(c)[3] == 0 for c in corners)
    assert image.getpixel((150, 100)) == (255, 165, 0, 255)  # the subject is kept as it was
    # (4.7 + 0.6 × 0.06) × 10/8 = 5.92 → 6
    assert workflow.charged() == 6 and debits_credits(workflow) == (6, 0)


async def test_background_removal_as_webp_keeps_the_alpha(client: OrchestratorClient) -> None:
    workflow = await run(client, [cutout(data_url(120, 120), "webp")], "cut-webp")
    image = decode(await client.download_blob(workflow.images()[0].url))
    assert image.format == "WEBP" and image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((60, 60))[3] == 255


@pytest.mark.parametrize(("side", "buzz"), [(512, 6), (1024, 7), (1600, 8), (2200, 10), (3072, 13)])
async def test_background_removal_whatif_matches_the_recipe_table(
    client: OrchestratorClient, side: int, buzz: int
) -> None:
    body = client.template([cutout(data_url(side, side))], f"cut-w-{side}")
    estimate = await client.submit(body, whatif=True)
    assert estimate.cost is not None and estimate.cost.total == buzz


# -- promptEnhancement -------------------------------------------------------------------------


async def test_prompt_enhancement_rewrites_and_explains(client: OrchestratorClient) -> None:
    step = enhancement("a cat on a wall", negativePrompt="ugly")
    estimate = await client.submit(client.template([step], "enh-whatif"), whatif=True)
    assert estimate.cost is not None and estimate.cost.total == 1
    workflow = await run(client, [step], "enh-1")
    result = workflow.enhancement()
    assert result is not None
    assert "a cat on a wall" in result.enhanced_prompt
    assert len(result.enhanced_prompt) > len("a cat on a wall")
    assert result.issues and all(i.severity in ("info", "warning", "error") for i in result.issues)
    assert len(result.recommendations) == len(result.issues)
    assert result.enhanced_negative_prompt and "ugly" in result.enhanced_negative_prompt
    assert workflow.images() == [] and workflow.moderation() is None
    assert workflow.charged() == 1


async def test_enhancement_keeps_markers_for_the_generation_but_is_not_ended_by_them(
    client: OrchestratorClient,
) -> None:
    workflow = await run(client, [enhancement("[sim:block] a cat")], "enh-marker")
    assert workflow.status == S.SUCCEEDED and not workflow.blocked()
    result = workflow.enhancement()
    assert result is not None and "[sim:block]" in result.enhanced_prompt
    assert result.enhanced_negative_prompt is None


# -- xGuardModeration --------------------------------------------------------------------------


async def test_a_clean_prompt_passes_moderation(client: OrchestratorClient) -> None:
    workflow = await run(client, [moderation("a quiet harbour at dawn")], "mod-clean")
    verdict = workflow.moderation()
    assert verdict is not None
    assert not verdict.blocked and verdict.triggered_labels == []
    assert {r.label for r in verdict.results} >= {"sexual", "violence", "hate"}
    assert all(r.score < r.threshold and not r.triggered for r in verdict.results)
    assert workflow.charged() == 1


async def test_moderation_flags_what_is_scripted(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script(Outcome(flag_labels=("violence",)), prompt="a duel")
    scripted = (await run(client, [moderation("a duel at noon")], "mod-s")).moderation()
    marked = (await run(client, [moderation("a cat [sim:flag]")], "mod-m")).moderation()
    named = (await run(client, [moderation("a cat [sim:flag:hate]")], "mod-n")).moderation()
    assert scripted and marked and named
    assert scripted.triggered_labels == ["violence"] and scripted.blocked
    assert scripted.scores()["violence"] > 0.9
    assert marked.triggered_labels == ["sexual"] and marked.blocked
    assert named.triggered_labels == ["hate"]


async def test_moderation_honours_label_filters_overrides_and_reasoning(
    client: OrchestratorClient,
) -> None:
    override = {"label": "sexual", "action": "Scan", "threshold": 0.9, "policy": "nudity only"}
    step = moderation(
        "a cat [sim:flag]",
        labels=["sexual", "hate", "no-such-label"],
        labelOverrides=[override],
        includeReasoning=True,
    )
    verdict = (await run(client, [step], "mod-o")).moderation()
    assert verdict is not None
    assert [r.label for r in verdict.results] == ["sexual", "hate"]
    assert verdict.triggered_labels == ["sexual"]
    assert not verdict.blocked  # triggered, but the override's action does not block
    assert all(r.model_reason for r in verdict.results)


async def test_moderation_can_fail_and_is_then_refunded(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script(Outcome("fail", step="xGuardModeration"), prompt="unlucky")
    workflow = await run(client, [moderation("an unlucky prompt")], "mod-fail")
    assert workflow.status == S.FAILED
    assert workflow.moderation() is None
    assert workflow.charged() == 0 and debits_credits(workflow) == (1, 1)


async def test_outcomes_scripted_for_a_generation_are_not_used_up_by_text_steps(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script("block")  # the next generation
    simulator.script("fail", prompt="a harbour")
    premoderated = await run(client, [moderation("a harbour")], "mod-first")
    enhanced = await run(client, [enhancement("a harbour")], "enh-first")
    generated = await run(client, [gen("a lighthouse")], "gen-after")
    assert premoderated.status == S.SUCCEEDED and enhanced.status == S.SUCCEEDED
    assert generated.status == S.FAILED and generated.blocked()
    assert (await run(client, [gen("a harbour")], "gen-fail")).status == S.FAILED


# -- several steps ------------------------------------------------------------------------------


async def test_a_workflow_of_several_steps_costs_their_sum(client: OrchestratorClient) -> None:
    steps = [moderation("a lighthouse"), gen("a lighthouse"), cutout(data_url(64, 64))]
    workflow = await run(client, steps, "multi")
    assert [s.type for s in workflow.steps] == [
        "xGuardModeration",
        "imageGen",
        "imageBackgroundRemoval",
    ]
    assert workflow.moderation() is not None
    assert [(b.width, b.height) for b in workflow.images()] == [(256, 256), (64, 64)]
    assert workflow.charged() == 1 + 300 + 6
    assert [job.cost for job in workflow.jobs()] == [1, 300, 6]
