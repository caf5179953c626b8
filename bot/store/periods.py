"""Allowance and budget periods in UTC: none, daily, weekly (ISO weeks, Monday 00:00), monthly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

Period = Literal["none", "daily", "weekly", "monthly"]
PERIODS: tuple[str, ...] = ("none", "daily", "weekly", "monthly")


def period_word(period: str) -> str:
    """How a period reads after an amount: '1,000 weekly', and 'none' as '50 once'."""
    return "once" if period == "none" else period


def period_key(period: str, now: datetime) -> str:
    """A stable name for the period containing `now`; 'none' is one period for all time."""
    now = now.astimezone(UTC)
    if period == "daily":
        return f"d{now:%Y-%m-%d}"
    if period == "weekly":
        year, week, _ = now.isocalendar()
        return f"w{year}-W{week:02d}"
    if period == "monthly":
        return f"m{now:%Y-%m}"
    if period == "none":
        return "once"
    raise ValueError(f"unknown period {period!r}")


def period_start(period: str, now: datetime) -> datetime | None:
    """When the period containing `now` began; None for 'none' (all time)."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight
    if period == "weekly":
        return midnight - timedelta(days=now.weekday())
    if period == "monthly":
        return midnight.replace(day=1)
    return None


def next_period_start(period: str, now: datetime) -> datetime | None:
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight + timedelta(days=1)
    if period == "weekly":
        return midnight + timedelta(days=7 - now.weekday())
    if period == "monthly":
        first = midnight.replace(day=1)
        return (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        )
    return None


def describe_moment(when: datetime, now: datetime) -> str:
    """'Monday 00:00 UTC' when it is less than a week away, else '1 Dec 00:00 UTC'."""
    when = when.astimezone(UTC)
    if when - now.astimezone(UTC) < timedelta(days=6):
        return f"{when:%A %H:%M} UTC"
    return f"{when.day} {when:%b %H:%M} UTC"
