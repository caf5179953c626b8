"""Content levels: the orchestrator's NSFWLevel scale, and which level a channel allows.

A channel allows results up to a level: by default PG-13 where Discord's age restriction is
off and everything where it is on. Admins lower or raise it for the server and for single
channels (a thread follows its parent), but never above what the channel's age restriction
allows: a channel that is not age-restricted never shows more than PG-13.
"""

from __future__ import annotations

# The schema's NSFWLevel, least to most explicit ("na", not applicable, rates nothing).
LEVELS = ("pg", "pg13", "r", "x", "xxx")
# What Civitai counts as mature content: R and above.
MATURE = frozenset({"r", "x", "xxx"})
LEAST_MATURE = "r"
# The most a channel without Discord's age restriction may show.
SAFE_CAP = "pg13"
TOP = "xxx"
NAMES = {"pg": "PG", "pg13": "PG-13", "r": "R", "x": "X", "xxx": "XXX"}


def rank(level: str | None) -> int:
    """The level's place on the scale; -1 for a missing or unknown rating ("na")."""
    return LEVELS.index(level) if level in LEVELS else -1


def parse(text: str) -> str:
    """'PG-13', 'pg13', ' R ' → the schema's name; ValueError for anything else."""
    key = text.strip().lower().replace("-", "").replace(" ", "")
    if key not in LEVELS:
        raise ValueError(f"unknown content level {text!r}: one of {', '.join(NAMES.values())}")
    return key


def name(level: str | None) -> str:
    """How members and moderators read a level (PG-13); unknown ratings read 'unrated'."""
    return NAMES.get(level or "", "unrated")


def cap(age_restricted: bool) -> str:
    """The most a channel may ever show, from Discord's age restriction alone."""
    return TOP if age_restricted else SAFE_CAP


def lower(a: str, b: str) -> str:
    return a if rank(a) <= rank(b) else b


def effective(server: str | None, channel: str | None, age_restricted: bool) -> str:
    """The level a channel allows: its own setting, else the server's, else everything —
    capped by what its age restriction allows."""
    return lower(channel or server or TOP, cap(age_restricted))


def above(rating: str | None, allowed: str | None) -> bool:
    """A known rating above what is allowed (an unknown rating, or no limit, is not)."""
    return allowed is not None and rank(rating) > rank(allowed)


def allows_mature(level: str | None) -> bool:
    return level in MATURE


def below_pg13(level: str | None) -> bool:
    """A channel's level under PG-13 (an unknown or missing level is not)."""
    return level in LEVELS and rank(level) < rank(SAFE_CAP)
