"""promptEnhancement: a rule-based stand-in for the LLM rewrite, 1 Buzz flat.

Civitai's recipe: "total = 1 Buzz per call" whatever the prompt, ecosystem or options. The
output has the schema's shape: issues (description, severity), recommendations, enhancedPrompt
and, when a negativePrompt was given, enhancedNegativePrompt. Markers such as [sim:block] are
kept in the rewrite so they still reach the generation that follows.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.civitai.simulator.scripting import Outcome
from bot.civitai.simulator.steps.base import StepContext, StepPlan

log = logging.getLogger(__name__)

PRICE = 1
# The recipe: LLM-backed, usually 2–10 s.
RUNTIME = (2.0, 10.0)
# Ecosystems that take booru-style tags rather than sentences (the recipe's examples).
TAG_ECOSYSTEMS = {"sd1", "sdxl", "pony", "illustrious"}
LIGHTING = ("light", "lit", "sun", "glow", "shadow", "dusk", "dawn", "night")


def plan(raw: dict[str, Any], ctx: StepContext) -> StepPlan:
    prompt = raw["prompt"]

    def output(blobs: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
        return enhance(prompt, raw["ecosystem"], raw.get("negativePrompt"))

    return StepPlan(price=PRICE, runtime=RUNTIME, prompt=prompt, makes_images=False, output=output)


def enhance(prompt: str, ecosystem: str, negative: str | None) -> dict[str, Any]:
    issues: list[dict[str, Any]] = []
    recommendations: list[str] = []
    words = prompt.split()
    if len(words) < 8:
        issues.append(
            {
                "description": "The prompt is short and leaves the subject open.",
                "severity": "warning",
            }
        )
        recommendations.append("Describe the subject's look, pose and setting.")
    if not any(word in prompt.lower() for word in LIGHTING):
        issues.append({"description": "No lighting is described.", "severity": "info"})
        recommendations.append("Name the light: golden hour, studio softbox, neon glow.")
    if ecosystem.lower() in TAG_ECOSYSTEMS:
        enhanced = f"masterpiece, best quality, highly detailed, {prompt.strip()}, sharp focus"
    else:
        enhanced = (
            f"{prompt.strip().rstrip('.')}, richly detailed, with soft natural light, "
            "a balanced composition and sharp focus."
        )
    result: dict[str, Any] = {
        "issues": issues,
        "recommendations": recommendations,
        "enhancedPrompt": enhanced,
        "enhancedNegativePrompt": None,
    }
    if negative is not None:
        result["enhancedNegativePrompt"] = f"{negative.strip()}, blurry, low quality, watermark"
    return result
