"""imageBackgroundRemoval: the source cut out on a transparent canvas, priced by runtime.

Civitai's recipe bills ~10 Buzz per 8 s of compute, runtime ≈ 4.7 s + 0.6 s per megapixel:
buzz = round((4.7 + 0.6·MP) × 10 / 8), at least 1 (512² → 6, 1024² → 7, 3072² → 13).
Computed exactly (fractions, half rounding up) so the price never depends on float error.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Any

from bot.civitai.placeholder import cut_out
from bot.civitai.simulator.scripting import Outcome
from bot.civitai.simulator.steps.base import BlobPlan, StepContext, StepPlan, StepRefused
from bot.civitai.simulator.steps.upscaler import UNLOADABLE

log = logging.getLogger(__name__)

# The recipe: 5–10 s on the fleet, floor-dominated.
RUNTIME = (5.0, 10.0)
# The schema's ImageBackgroundRemovalFormat → the outputFormat spelling blobs use.
FORMATS = {"png": "png", "webp": "webP"}


def price(width: int, height: int) -> int:
    seconds = Fraction(47, 10) + Fraction(6, 10) * Fraction(width * height, 1_000_000)
    return max(1, math.floor(seconds * Fraction(10, 8) + Fraction(1, 2)))


def plan(raw: dict[str, Any], ctx: StepContext) -> StepPlan:
    source = ctx.load_image(raw["image"])
    if source is None:
        raise StepRefused([("image", UNLOADABLE)])
    fmt = FORMATS[raw.get("format") or "png"]

    def draw(w: int, h: int) -> bytes:
        return cut_out(source.data, w, h, fmt)

    return StepPlan(
        price=price(source.width, source.height),
        runtime=RUNTIME,
        blobs=[BlobPlan(source.width, source.height, fmt, draw, source.nsfw_level)],
        output=_output,
    )


def _output(blobs: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
    return {"image": blobs[0]}
