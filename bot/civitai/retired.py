"""How the orchestrator says a model is gone: a refusal that names the step's model as
unavailable, retired or unsupported, or a job no worker supports (queuePosition.support
"unsupported")."""

from __future__ import annotations

from typing import Any

from bot.civitai.errors import ValidationFailed
from bot.civitai.models import Workflow

WORDS = (
    "retired",
    "no longer available",
    "not available",
    "unavailable",
    "unsupported",
    "not supported",
    "deprecated",
    "decommissioned",
)
UNSUPPORTED = "unsupported"


def _says_gone(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in WORDS)


def refused_as_gone(step: dict[str, Any], exc: ValidationFailed) -> bool:
    """The submit was refused because the step's model is no longer offered."""
    general: list[str] = []
    for path, messages in exc.fields.items():
        field = path.rsplit(".", 1)[-1]
        if field == "model" and any(_says_gone(m) for m in messages):
            return True
        # A refusal of another input field ("width … is not supported by gpt-image-2") is
        # about this request, not the model: one of them must not switch it off everywhere.
        if ".input." not in path or field == "model":
            general += messages
    model = (step.get("input") or {}).get("model")
    text = " ".join(general) if exc.fields else str(exc)
    return bool(model) and str(model).lower() in text.lower() and _says_gone(text)


def unsupported(workflow: Workflow) -> bool:
    """A job that no worker supports: it would wait in the queue for ever."""
    return any(
        job.queue_position is not None and job.queue_position.support == UNSUPPORTED
        for job in workflow.jobs()
    )
