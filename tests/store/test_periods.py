"""Allowance and budget periods: keys, starts and next starts in UTC across boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.store.periods import describe_moment, next_period_start, period_key, period_start


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "key", "start", "nxt"),
    [
        # Sunday 23:59 is still the old ISO week; the next one starts Monday 00:00.
        ("weekly", utc(2025, 1, 12, 23, 59), "w2025-W02", utc(2025, 1, 6), utc(2025, 1, 13)),
        ("weekly", utc(2025, 1, 13, 0, 0), "w2025-W03", utc(2025, 1, 13), utc(2025, 1, 20)),
        # ISO weeks cross the year: 2024-12-31 (Tuesday) is in 2025-W01.
        ("weekly", utc(2024, 12, 31, 8), "w2025-W01", utc(2024, 12, 30), utc(2025, 1, 6)),
        ("weekly", utc(2021, 1, 3, 12), "w2020-W53", utc(2020, 12, 28), utc(2021, 1, 4)),
        ("daily", utc(2025, 1, 12, 23, 59, 59), "d2025-01-12", utc(2025, 1, 12), utc(2025, 1, 13)),
        ("daily", utc(2024, 12, 31, 23, 0), "d2024-12-31", utc(2024, 12, 31), utc(2025, 1, 1)),
        ("daily", utc(2024, 2, 28, 10), "d2024-02-28", utc(2024, 2, 28), utc(2024, 2, 29)),
        ("monthly", utc(2024, 12, 31, 23, 59), "m2024-12", utc(2024, 12, 1), utc(2025, 1, 1)),
        ("monthly", utc(2025, 1, 31, 12), "m2025-01", utc(2025, 1, 1), utc(2025, 2, 1)),
        ("monthly", utc(2024, 2, 29, 12), "m2024-02", utc(2024, 2, 1), utc(2024, 3, 1)),
        ("monthly", utc(2025, 4, 30, 23, 59), "m2025-04", utc(2025, 4, 1), utc(2025, 5, 1)),
        ("none", utc(2025, 1, 12, 23, 59), "once", None, None),
        ("none", utc(1999, 6, 1), "once", None, None),
    ],
)
def test_keys_starts_and_next_starts(
    period: str, now: datetime, key: str, start: datetime | None, nxt: datetime | None
) -> None:
    assert period_key(period, now) == key
    assert period_start(period, now) == start
    assert next_period_start(period, now) == nxt
    if nxt is not None:
        # One microsecond before the next start is the same period; the start is a new one.
        assert period_key(period, nxt - timedelta(microseconds=1)) == key
        assert period_key(period, nxt) != key
        assert nxt.tzinfo is not None and nxt.utcoffset() == timedelta(0)


def test_non_utc_input_is_converted_first() -> None:
    # Monday 01:30 in UTC+02:00 is Sunday 23:30 UTC: still the old week, day and month.
    plus2 = timezone(timedelta(hours=2))
    local = datetime(2025, 2, 3, 1, 30, tzinfo=plus2)  # 2025-02-02 23:30 UTC (Sunday)
    assert period_key("weekly", local) == "w2025-W05"
    assert period_key("daily", local) == "d2025-02-02"
    assert next_period_start("weekly", local) == utc(2025, 2, 3)
    assert next_period_start("daily", local) == utc(2025, 2, 3)
    # Sunday 20:00 in UTC-05:00 is Monday 01:00 UTC: already the new week.
    minus5 = timezone(timedelta(hours=-5))
    evening = datetime(2025, 2, 2, 20, 0, tzinfo=minus5)
    assert period_key("weekly", evening) == "w2025-W06"
    assert period_start("weekly", evening) == utc(2025, 2, 3)
    # 31 Jan 20:00 at UTC-05:00 is 1 Feb in UTC: the month has turned.
    assert period_key("monthly", datetime(2025, 1, 31, 20, tzinfo=minus5)) == "m2025-02"
    assert next_period_start("monthly", datetime(2025, 12, 31, 20, tzinfo=minus5)) == utc(
        2026, 2, 1
    )


def test_unknown_period_is_refused() -> None:
    with pytest.raises(ValueError, match="hourly"):
        period_key("hourly", utc(2025, 1, 1))


def test_describe_moment() -> None:
    thursday = utc(2025, 1, 9, 12)
    assert describe_moment(utc(2025, 1, 13), thursday) == "Monday 00:00 UTC"
    assert describe_moment(utc(2025, 2, 1), thursday) == "1 Feb 00:00 UTC"
