"""What every simulated step type provides: a plan (price, runtime, blobs, output) per input."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.civitai.simulator.scripting import Outcome

log = logging.getLogger(__name__)

# Draws an image at (width, height): the planned size, or smaller under max_image_side.
Render = Callable[[int, int], bytes]


class StepRefused(Exception):
    """The input passes the schema but not the orchestrator's own rules: a 400 for these
    (path relative to the step's input, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))
        self.errors = errors


@dataclass(frozen=True)
class Source:
    """An input image, loaded: its bytes, size, format and (if it was a blob here) rating."""

    data: bytes
    width: int
    height: int
    fmt: str
    nsfw_level: str | None = None


class StepContext(Protocol):
    """What a step's planner may ask of the simulator."""

    surcharge: int

    def load_image(self, source: str) -> Source | None:
        """A URL of one of this simulator's blobs, a data URL or Base64; None if unreadable."""
        ...

    def image_size(self, source: str) -> tuple[int, int] | None:
        """The pixel size of `source`, reading as little as it can."""
        ...


@dataclass(frozen=True)
class BlobPlan:
    """One output image: its size and format, how to draw it, the rating it inherits."""

    width: int
    height: int
    fmt: str
    render: Render
    nsfw_level: str | None = None


def _no_output(blobs: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
    return {}


@dataclass
class StepPlan:
    """A step as the simulator will run it."""

    price: int
    # Seconds per unit (before speed), drawn uniformly, times `units`.
    runtime: tuple[float, float]
    units: int = 1
    # The text scripting matches on (script(prompt=...), [sim:...] markers).
    prompt: str = ""
    # An image step: markers such as [sim:block] in its prompt decide the workflow, and so do
    # outcomes scripted without a step type. Not text steps (enhancement, moderation), whose
    # prompt is meant for the generation that follows them.
    makes_images: bool = True
    blobs: list[BlobPlan] = field(default_factory=list)
    # The step's output from its blobs' JSON and the workflow's outcome.
    output: Callable[[list[dict[str, Any]], Outcome], dict[str, Any]] = _no_output


Planner = Callable[[dict[str, Any], StepContext], StepPlan]
