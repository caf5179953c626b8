"""imageGen: the OpenAI image models, priced and timed as the Civitai guide says."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from bot.catalog.inputs import ImageGenInput, input_model
from bot.catalog.names import Model, Operation
from bot.catalog.request import price_input
from bot.catalog.sizes import parse_size
from bot.civitai.placeholder import render
from bot.civitai.simulator.scripting import Outcome
from bot.civitai.simulator.steps.base import BlobPlan, StepContext, StepPlan, StepRefused
from bot.civitai.simulator.steps.upscaler import UNLOADABLE

log = logging.getLogger(__name__)

# The guide's per-image wall times (seconds), by model and quality.
RUNTIMES: dict[str, tuple[float, float]] = {
    "dall-e-2": (3, 8),
    "dall-e-3": (10, 20),
    "dall-e-3/hd": (15, 40),
    "gpt-image-1": (10, 30),
    "gpt-image-1.5": (10, 30),
    "gpt-image-2": (15, 45),
}


def plan(raw: dict[str, Any], ctx: StepContext) -> StepPlan:
    _guide_rules(raw)
    cls = input_model(Model(raw["model"]), Operation(raw["operation"]))
    assert cls is not None  # the schema's discriminators already checked the pair
    try:
        inp = cls.model_validate(raw)
    except ValidationError as exc:
        raise StepRefused([(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]) from exc
    _loadable(raw, ctx)
    width, height = _output_size(inp, ctx)
    price = price_input(inp, (width, height)) + ctx.surcharge
    quality = getattr(inp, "quality", "")
    key = f"{inp.MODEL.value}/hd" if quality == "hd" else inp.MODEL.value
    quantity = int(getattr(inp, "quantity", 1))
    prompt = getattr(inp, "prompt", "")
    fmt = inp.output_format or "jpeg"

    def blob(index: int) -> BlobPlan:
        caption = f"{inp.MODEL.value} · {width}x{height} · {index + 1}/{quantity}"
        return BlobPlan(width, height, fmt, lambda w, h: render(prompt, w, h, fmt, caption))

    return StepPlan(
        price=price,
        runtime=RUNTIMES[key],
        units=quantity,
        prompt=prompt,
        blobs=[blob(i) for i in range(quantity)],
        output=_output,
    )


def _output(blobs: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
    return {"images": blobs}


def _guide_rules(raw: dict[str, Any]) -> None:
    """The guide's rules the schema does not state: gpt-image-2 sides are multiples of 16."""
    if raw.get("model") != "gpt-image-2":
        return
    errors = [
        (side, f"{side} must be a multiple of 16")
        for side in ("width", "height")
        if isinstance(raw.get(side), int) and raw[side] % 16
    ]
    if errors:
        raise StepRefused(errors)


def _loadable(raw: dict[str, Any], ctx: StepContext) -> None:
    """Edit sources and masks the orchestrator cannot load (an unknown or expired blob, a URL
    it cannot reach, bytes that are not an image) refuse the step, as they would upstream."""
    named = [(f"images.{n}", src) for n, src in enumerate(raw.get("images") or [])]
    named += [(key, raw[key]) for key in ("image", "mask") if isinstance(raw.get(key), str)]
    errors = [(name, UNLOADABLE) for name, src in named if ctx.load_image(src) is None]
    if errors:
        raise StepRefused(errors)


def _output_size(inp: ImageGenInput, ctx: StepContext) -> tuple[int, int]:
    width, height = getattr(inp, "width", None), getattr(inp, "height", None)
    if width and height:
        return width, height
    parsed = parse_size(getattr(inp, "size", None) or "")
    if parsed:
        return parsed
    sources = getattr(inp, "images", None) or [getattr(inp, "image", "")]
    return (ctx.image_size(sources[0]) if sources[0] else None) or (1024, 1024)
