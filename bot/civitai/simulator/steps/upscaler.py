"""imageUpscaler: the source enlarged 2× per pass, priced as Civitai's upscaling recipe says.

The recipe's cost: max(1, ceil(input megapixels)) × 2^numberOfRepeats (512² ×1 = 2,
1024² ×1 = 4, 2048² ×1 = 10, 1024² ×3 = 16). The scale per pass is 2, as the schema's
numberOfRepeats says ("Each repeat doubles the resolution") and the recipe's cost formula
assumes ("2 per pass"); the recipe's prose calls the default 4x-Remacri a 4× model, but both
its formula and the schema say 2, and the schema decides. `model` (an AIR) is accepted and does
not change the scale or the price.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.civitai.placeholder import upscale
from bot.civitai.simulator.scripting import Outcome
from bot.civitai.simulator.steps.base import BlobPlan, StepContext, StepPlan, StepRefused

log = logging.getLogger(__name__)

SCALE_PER_PASS = 2
# The recipe: one pass on about a megapixel takes 5–15 s; each repeat runs the model again.
RUNTIME = (5.0, 15.0)
UNLOADABLE = "image could not be loaded"


def price(width: int, height: int, repeats: int) -> int:
    """Buzz for upscaling a width×height image `repeats` times (integer arithmetic)."""
    megapixels = -(-width * height // 1_000_000)  # ceil
    return max(1, megapixels) * SCALE_PER_PASS**repeats


def plan(raw: dict[str, Any], ctx: StepContext) -> StepPlan:
    source = ctx.load_image(raw["image"])
    if source is None:
        raise StepRefused([("image", UNLOADABLE)])
    repeats = raw.get("numberOfRepeats") or 1
    scale = SCALE_PER_PASS**repeats
    width, height = source.width * scale, source.height * scale
    caption = f"upscaled ×{scale} · {width}x{height}"

    def draw(w: int, h: int) -> bytes:
        return upscale(source.data, w, h, source.fmt, caption)

    return StepPlan(
        price=price(source.width, source.height, repeats),
        runtime=RUNTIME,
        units=repeats,
        blobs=[BlobPlan(width, height, source.fmt, draw, source.nsfw_level)],
        output=_output,
    )


def _output(blobs: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
    return {"blob": blobs[0]}
