"""The labels AI pre-moderation (xGuard) can evaluate, as admins name them."""

from __future__ import annotations

import re

# The label set Civitai maps xGuard verdicts from (and the simulator evaluates).
XGUARD_LABELS = (
    "sexual",
    "sexual/minors",
    "hate",
    "hate/threatening",
    "harassment",
    "self-harm",
    "violence",
    "violence/graphic",
)
ALL = "all"


def parse_labels(text: str) -> tuple[str, ...]:
    """'hate, violence' → ('hate', 'violence'); 'all' or nothing → () (every label).

    An unknown label is refused rather than passed on: the orchestrator silently ignores
    labels it does not know, so a typo would quietly switch the check off."""
    names = [n for n in re.split(r"[\s,;]+", text.strip().lower()) if n]
    if not names or names == [ALL]:
        return ()
    unknown = [n for n in names if n not in XGUARD_LABELS]
    if unknown:
        raise ValueError(
            f"unknown label{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
            f"choose from {', '.join(XGUARD_LABELS)} (or all)"
        )
    return tuple(dict.fromkeys(names))
