"""The orchestrator's other steps the bot offers: upscaling and background removal of a posted
result, and prompt enhancement before an image. What each step sends (closed inputs, as the
OpenAPI schema has them) and the local estimate held when the orchestrator's whatif cannot say.

These steps have no price table of their own; the orchestrator's whatif is the price. The local
estimates are the recipes' published formulas (Civitai docs), used only as a fallback:
- imageUpscaler: max(1, ceil(megapixels)) × 2^numberOfRepeats (512² ×1 = 2, 1024² ×1 = 4);
- imageBackgroundRemoval: ~10 Buzz per 8 s of compute, 4.7 s + 0.6 s per megapixel:
  max(1, round((4.7 + 0.6·MP) × 10 / 8)) (512² → 6, 1024² → 7);
- promptEnhancement: 1 Buzz per call.
"""

from __future__ import annotations

import math
from enum import StrEnum
from fractions import Fraction
from typing import Any


class Tool(StrEnum):
    """A job that is not an image generation. The value is what the job's `model` column holds
    (and what an admin switches off per guild, like a model)."""

    UPSCALE = "upscaler"
    REMOVE_BACKGROUND = "background-removal"
    ENHANCE = "prompt-enhancement"

    @property
    def step_type(self) -> str:
        return STEP_TYPES[self]

    @property
    def label(self) -> str:
        return LABELS[self]


STEP_TYPES: dict[Tool, str] = {
    Tool.UPSCALE: "imageUpscaler",
    Tool.REMOVE_BACKGROUND: "imageBackgroundRemoval",
    Tool.ENHANCE: "promptEnhancement",
}
LABELS: dict[Tool, str] = {
    Tool.UPSCALE: "Upscale",
    Tool.REMOVE_BACKGROUND: "Remove background",
    Tool.ENHANCE: "Prompt enhancement",
}
TOOL_NAMES: tuple[str, ...] = tuple(t.value for t in Tool)
# The tools that act on a posted image (a result button each).
IMAGE_TOOLS: tuple[Tool, ...] = (Tool.UPSCALE, Tool.REMOVE_BACKGROUND)
# Each repeat of the upscaler doubles the sides (the schema's numberOfRepeats: 1-3).
UPSCALE_REPEATS = 1
UPSCALE_FACTOR = 2
# The schema's ImageBackgroundRemovalFormat: png keeps the transparency everywhere.
CUTOUT_FORMAT = "png"
ENHANCE_PRICE = 1
# promptEnhancement rewrites for an "ecosystem" (the downstream generation's family).
DEFAULT_ECOSYSTEM = "openai"
# The schema's PromptEnhancementInput has no length cap; Discord's text options do.
ENHANCE_PROMPT_MAX = 6000


def tool_of(job_model: str) -> Tool | None:
    """The tool a job ran (from its `model` column), None for an image generation."""
    try:
        return Tool(job_model)
    except ValueError:
        return None


def tool_of_step(step_type: str) -> Tool | None:
    return next((t for t, s in STEP_TYPES.items() if s == step_type), None)


# A posted result named in a stored step: image N (0-based, workflow order) of job JOB. The
# lane sends it as the orchestrator's own blob URL, else as the bytes the bot posted.
RESULT_REF = "result://"


def result_ref(job_id: str, index: int) -> str:
    return f"{RESULT_REF}{job_id}/{index}"


def parse_result_ref(value: str) -> tuple[str, int] | None:
    if not value.startswith(RESULT_REF):
        return None
    job_id, _, index = value[len(RESULT_REF) :].partition("/")
    number = index.isascii() and index.isdigit()
    return (job_id, int(index)) if job_id and number else None


# -- the steps, as submitted ----------------------------------------------------------------
def upscale_step(image: str, *, repeats: int = UPSCALE_REPEATS, model: str | None = None) -> dict:
    """ImageUpscalerInput: the image (a URL, a data URL, or a reference the lane resolves),
    the number of doublings, and the upscaler's AIR only when the operator chose one."""
    payload: dict[str, Any] = {"image": image, "numberOfRepeats": repeats}
    if model:
        payload["model"] = model
    return {"$type": Tool.UPSCALE.step_type, "input": payload}


def background_step(image: str, *, fmt: str = CUTOUT_FORMAT) -> dict:
    """ImageBackgroundRemovalInput: the image and the output format (png or webp)."""
    return {"$type": Tool.REMOVE_BACKGROUND.step_type, "input": {"image": image, "format": fmt}}


def enhancement_step(prompt: str, *, ecosystem: str = DEFAULT_ECOSYSTEM) -> dict:
    """PromptEnhancementInput: the member's prompt and the ecosystem it is rewritten for."""
    return {
        "$type": Tool.ENHANCE.step_type,
        "input": {"ecosystem": ecosystem, "prompt": prompt},
    }


# -- local estimates (the fallback when whatif fails) ---------------------------------------
def upscale_estimate(width: int, height: int, repeats: int = UPSCALE_REPEATS) -> int:
    megapixels = -(-width * height // 1_000_000)  # ceil, in integers
    return max(1, megapixels) * 2**repeats


def background_estimate(width: int, height: int) -> int:
    """Half-up rounding, computed exactly (no float error near .5)."""
    seconds = Fraction(47, 10) + Fraction(6, 10) * Fraction(width * height, 1_000_000)
    return max(1, math.floor(seconds * Fraction(10, 8) + Fraction(1, 2)))


def estimate(tool: Tool, width: int | None, height: int | None) -> int:
    """The local estimate for `tool` on a width × height source (unknown: 1024²)."""
    w, h = width or 1024, height or 1024
    if tool is Tool.UPSCALE:
        return upscale_estimate(w, h)
    if tool is Tool.REMOVE_BACKGROUND:
        return background_estimate(w, h)
    return ENHANCE_PRICE


def largest_result_bytes(width: int, height: int) -> int:
    """The most bytes a result this size may take: a PNG whose RGBA pixels do not compress (4
    bytes each), with room for its rows' filter bytes and its chunks' headers."""
    return width * height * 4 + height + 64 * 1024


def describe(tool: Tool, options: dict[str, Any]) -> str:
    """A few words for what the job did: "Upscale ×2 of image 2"."""
    text = tool.label
    if tool is Tool.UPSCALE:
        text += f" ×{UPSCALE_FACTOR ** int(options.get('repeats') or UPSCALE_REPEATS)}"
    image = options.get("image")
    if image:
        text += f" of image {image}"
    return text
