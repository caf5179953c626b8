"""The step types the simulator runs, each a planner: input → price, runtime, blobs, output."""

from __future__ import annotations

from bot.civitai.simulator.steps import (
    background,
    image_gen,
    moderation,
    prompt_enhancement,
    upscaler,
)
from bot.civitai.simulator.steps.base import (
    BlobPlan,
    Planner,
    Render,
    Source,
    StepContext,
    StepPlan,
    StepRefused,
)

PLANNERS: dict[str, Planner] = {
    "imageGen": image_gen.plan,
    "imageUpscaler": upscaler.plan,
    "imageBackgroundRemoval": background.plan,
    "promptEnhancement": prompt_enhancement.plan,
    "xGuardModeration": moderation.plan,
}

__all__ = [
    "PLANNERS",
    "BlobPlan",
    "Planner",
    "Render",
    "Source",
    "StepContext",
    "StepPlan",
    "StepRefused",
]
