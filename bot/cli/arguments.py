"""Argument types the commands share: a bad value is argparse's one-line usage error naming the
option, not a traceback or a silent "no limit"."""

from __future__ import annotations

import argparse


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


def count(text: str) -> int:
    """How many rows to show: SQLite reads a negative LIMIT as "all of them"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value
