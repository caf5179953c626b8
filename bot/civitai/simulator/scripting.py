"""What tests script: how future workflows end, and how future requests misbehave."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

OUTCOMES = (
    "succeed",
    "fail",
    "block",
    "block_charged",
    "expire",
    "never",
    "blob_blocked",
    "output_errors",
)
# Outcomes whose charge is refunded when the workflow ends.
REFUNDED = {"fail", "block", "expire", "output_errors"}
# The schema's NSFWLevel, least to most explicit ("na", not applicable, is never produced).
NSFW_LEVELS = ("pg", "pg13", "r", "x", "xxx")
# What Civitai counts as mature: R and above (its ResourceInfo: "MatureContent includes R").
MATURE_LEVELS = frozenset({"r", "x", "xxx"})
# The label a bare "[sim:flag]" prompt marker flags.
DEFAULT_FLAG = "sexual"
_FLAG_MARKER = re.compile(r"\[sim:flag(?::([^\]]+))?\]")


@dataclass(frozen=True)
class Outcome:
    """How a simulated workflow ends. `runtime` (real seconds, before speed) overrides the draw;
    `charge` overrides what is debited (to test charges above the estimate); `nsfw_level` rates
    every output blob; `flag_labels` are the labels an xGuardModeration step triggers, and
    `label_errors` the labels its model could not score (the result's `error`; "*": all);
    `moderation_blocked` overrides that step's `blocked` (the orchestrator may block with no
    label triggered).

    `step` names the step type a workflow must have for this outcome to apply to it (unless it
    is scripted by externalId). Left out, it applies to workflows that make images, not to a
    prompt enhancement or moderation run before them: scripting "block" for a generation must
    not be used up by the pre-moderation of the same prompt. `flag_labels` imply
    xGuardModeration, and so do `label_errors`."""

    kind: str = "succeed"
    runtime: float | None = None
    charge: int | None = None
    nsfw_level: str | None = None
    flag_labels: tuple[str, ...] = ()
    label_errors: tuple[str, ...] = ()
    step: str | None = None
    # Output images (by index) whose content the blob store never serves (503 for ever).
    unavailable_blobs: tuple[int, ...] = ()
    # A refunded outcome's credit shows only this many real seconds after the workflow ended
    # (a refund the orchestrator books late).
    refund_delay: float = 0.0
    moderation_blocked: bool | None = None
    # Output blobs reported with width and height null (the schema allows it).
    unsized: bool = False

    def __post_init__(self) -> None:
        if self.kind not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.kind!r}: one of {', '.join(OUTCOMES)}")
        if self.nsfw_level is not None and self.nsfw_level not in NSFW_LEVELS:
            raise ValueError(f"unknown nsfw level {self.nsfw_level!r}: one of {NSFW_LEVELS}")
        # A JSON script gives a list; keep the dataclass hashable.
        object.__setattr__(self, "flag_labels", tuple(self.flag_labels))
        object.__setattr__(self, "label_errors", tuple(self.label_errors))
        moderates = self.flag_labels or self.label_errors or self.moderation_blocked is not None
        if self.step is None and moderates:
            object.__setattr__(self, "step", "xGuardModeration")

    def applies(self, step_types: set[str], makes_images: bool) -> bool:
        return self.step in step_types if self.step else makes_images


@dataclass
class Fault:
    """A scripted misbehaviour of one route: an error status, a 200 with a broken body, or an
    answer that is lost after the request was acted on."""

    status: int
    times: int
    retry_after: float | None = None
    route: str | None = None
    # Sent as it is (with `status`) instead of a problem document: garbage, malformed JSON.
    body: bytes | None = None
    # Act on the request, then drop the connection without answering (a lost answer).
    lose: bool = False
    # A monotonic time until which the fault holds, however many requests come (a burst).
    until: float | None = None

    def active(self, now: float) -> bool:
        return self.times > 0 and (self.until is None or now < self.until)


class Script:
    """Outcomes waiting for future workflows and faults waiting for future requests."""

    def __init__(self) -> None:
        self.queued: list[Outcome] = []
        self.keyed: dict[str, Outcome] = {}
        # Mutated in place only: the simulator shares this list (tests clear it).
        self.faults: list[Fault] = []

    def add(self, outcome: Outcome, *, external_id: str | None, prompt: str | None) -> None:
        if external_id is not None:
            self.keyed[f"id:{external_id}"] = outcome
        elif prompt is not None:
            self.keyed[f"prompt:{prompt}"] = outcome
        else:
            self.queued.append(outcome)

    def pick(
        self,
        external_id: str | None,
        prompt: str,
        marked: str,
        step_types: set[str],
        makes_images: bool,
    ) -> Outcome:
        """By externalId, then by prompt text, then the first queued one that applies (see
        Outcome.step), then a marker such as [sim:block] in `marked` (the prompts of image
        steps; for demos by hand), else success."""
        if external_id and f"id:{external_id}" in self.keyed:
            return self.keyed.pop(f"id:{external_id}")
        for key, outcome in self.keyed.items():
            if (
                key.startswith("prompt:")
                and key[len("prompt:") :] in prompt
                and outcome.applies(step_types, makes_images)
            ):
                return outcome
        for i, outcome in enumerate(self.queued):
            if outcome.applies(step_types, makes_images):
                return self.queued.pop(i)
        for kind in OUTCOMES:
            if f"[sim:{kind}]" in marked:
                return Outcome(kind)
        return Outcome()

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def take_fault(self, route: str) -> Fault | None:
        now = time.monotonic()
        self.faults[:] = [f for f in self.faults if f.active(now)]
        for fault in self.faults:
            if fault.route in (None, route):
                fault.times -= 1
                log.debug("simulated fault %s on %s", fault.status, route)
                return fault
        return None


def nsfw_marker(text: str) -> str | None:
    """A rating asked for in a prompt, e.g. "[sim:r]"."""
    for level in NSFW_LEVELS:
        if f"[sim:{level}]" in text:
            return level
    return None


def flag_markers(text: str) -> tuple[str, ...]:
    """Labels asked for in a prompt: "[sim:flag]" flags the default, "[sim:flag:hate]" hate."""
    return tuple((m.group(1) or DEFAULT_FLAG).strip() for m in _FLAG_MARKER.finditer(text))


def rank(level: str | None) -> int:
    """Order of a rating (unknown or missing ranks as pg)."""
    return NSFW_LEVELS.index(level) if level in NSFW_LEVELS else 0
