"""xGuardModeration in prompt mode: per-label scores, the labels triggered, and whether that
blocks — flagged only when scripted (Outcome.flag_labels, or a "[sim:flag]" /
"[sim:flag:hate]" marker in the positive prompt). Text mode is refused: the bot does not use it.

The label set is the one Civitai's own site maps xGuard verdicts from (sexual, hate, ...), each
with action Block at threshold 0.5; labelOverrides replace or add labels (an action other than
Block triggers without blocking) and `labels` narrows what is evaluated, as the schema says.
Price: 1 Buzz. No published price was found; it is the recipe price of the other LLM-backed
text step (promptEnhancement), and small either way.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from bot.civitai.simulator.scripting import Outcome, flag_markers
from bot.civitai.simulator.steps.base import StepContext, StepPlan, StepRefused

log = logging.getLogger(__name__)

PRICE = 1
RUNTIME = (1.0, 3.0)
BLOCK = "Block"
DEFAULT_LABELS = (
    "sexual",
    "sexual/minors",
    "hate",
    "hate/threatening",
    "harassment",
    "self-harm",
    "violence",
    "violence/graphic",
)
DEFAULT_THRESHOLD = 0.5
FLAGGED_SCORE = 0.97


def plan(raw: dict[str, Any], ctx: StepContext) -> StepPlan:
    if raw["mode"] != "prompt":
        raise StepRefused([("mode", "only prompt mode is simulated")])
    prompt = raw["positivePrompt"]

    def output(blobs: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
        flagged = set(outcome.flag_labels or flag_markers(prompt))
        answer = verdict(raw, flagged, set(outcome.label_errors))
        if outcome.moderation_blocked is not None:
            answer["blocked"] = outcome.moderation_blocked
        return answer

    return StepPlan(price=PRICE, runtime=RUNTIME, prompt=prompt, makes_images=False, output=output)


def verdict(
    raw: dict[str, Any], flagged: set[str], errors: set[str] | None = None
) -> dict[str, Any]:
    errors = errors or set()
    labels: dict[str, dict[str, Any]] = {
        name: {"action": BLOCK, "threshold": DEFAULT_THRESHOLD} for name in DEFAULT_LABELS
    }
    for name in sorted(flagged - set(labels)):  # a scripted verdict on a label of its own
        labels[name] = {"action": BLOCK, "threshold": DEFAULT_THRESHOLD}
    for override in raw.get("labelOverrides") or []:
        labels[override["label"]] = {
            "action": override["action"],
            "threshold": override["threshold"],
        }
    wanted = raw.get("labels") or list(labels)
    prompt = raw["positivePrompt"]
    reasoning = bool(raw.get("includeReasoning"))
    results = []
    for name in (n for n in wanted if n in labels):
        config = labels[name]
        score = FLAGGED_SCORE if name in flagged else _background_score(prompt, name)
        triggered = score >= config["threshold"]
        reason = ""
        if name in errors or "*" in errors:  # the model gave no verdict for this label
            results.append(_errored(name, config))
            continue
        if reasoning:
            found = "matches" if triggered else "does not match"
            reason = f"The prompt {found} the {name} policy (simulated)."
        results.append(
            {
                "label": name,
                "action": config["action"],
                "threshold": config["threshold"],
                "score": score,
                "triggered": triggered,
                "topToken": "unsafe" if triggered else "safe",
                "field": "positivePrompt",
                "modelReason": reason,
                "finishReason": "stop",
            }
        )
    triggered = [r["label"] for r in results if r["triggered"]]
    return {
        "results": results,
        "blocked": any(r["triggered"] and r["action"] == BLOCK for r in results),
        "triggeredLabels": triggered,
    }


def _errored(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A label the model could not score: no verdict, nothing triggered, the error named."""
    return {
        "label": name,
        "action": config["action"],
        "threshold": config["threshold"],
        "score": 0.0,
        "triggered": False,
        "topToken": "",
        "field": "positivePrompt",
        "modelReason": "",
        "finishReason": None,
        "error": "the moderation model did not answer (simulated)",
    }


def _background_score(prompt: str, label: str) -> float:
    """A small, stable score for a label nothing scripted: 0.01–0.20."""
    digest = hashlib.sha256(f"{label}\n{prompt}".encode()).digest()
    return round(0.01 + digest[0] / 255 * 0.19, 3)
