"""Which model to use instead of one that is switched off or retired: the first of the
preference order that can do the same operation and is on."""

from __future__ import annotations

from collections.abc import Callable

from bot.catalog.capabilities import capability
from bot.catalog.names import Model, Operation

# Newest first: what the bot suggests when a member's model is gone.
PREFERENCE: tuple[Model, ...] = (
    Model.GPT_IMAGE_2,
    Model.GPT_IMAGE_1_5,
    Model.GPT_IMAGE_1,
    Model.DALL_E_3,
    Model.DALL_E_2,
)


def replacement(
    model: str, operation: Operation | str, enabled: Callable[[str], bool]
) -> Model | None:
    """The model to suggest instead of `model` for `operation`; None when none is on (or
    `model` is not an image model: a tool has no stand-in)."""
    if model not in {m.value for m in PREFERENCE}:
        return None
    try:
        op = Operation(operation)
    except ValueError:
        op = Operation.CREATE
    for candidate in PREFERENCE:
        if candidate.value == model or not enabled(candidate.value):
            continue
        if capability(candidate, op) is not None:
            return candidate
    return None


def retired_text(model: str, operation: Operation | str, enabled: Callable[[str], bool]) -> str:
    """What a member reads about a model the orchestrator no longer offers."""
    instead = replacement(model, operation, enabled)
    text = f"{model} is no longer available from the orchestrator, so it is switched off"
    if instead is not None:
        return f"{text}; use {instead.value} instead"
    return f"{text}; an admin has been told"
