"""Argument types the commands share: a bad value is argparse's one-line usage error naming the
option, not a traceback or a silent "no limit"."""

from __future__ import annotations

import argparse

from bot.store.db import MAX_INTEGER


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number") from None


def count(text: str) -> int:
    """How many rows to show: SQLite reads a negative LIMIT as "all of them"."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    if value > MAX_INTEGER:
        raise argparse.ArgumentTypeError(f"{text} is too large (at most {MAX_INTEGER})")
    return value


def snowflake(text: str) -> int:
    """A Discord id (a server's, a member's): a positive 64-bit integer."""
    value = _whole(text)
    if not 1 <= value <= MAX_INTEGER:
        raise argparse.ArgumentTypeError(f"{text} is not a Discord id")
    return value
