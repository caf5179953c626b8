"""The step types the simulator runs, each a planner: input → price, runtime, blobs, output."""

from __future__ import annotations

from bot.civitai.simulator.steps import image_gen
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
