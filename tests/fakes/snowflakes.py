"""Discord snowflake ids and timestamps.

A snowflake is ``(ms_since_discord_epoch << 22) | worker << 17 | process << 12 | increment``;
discord.py reads creation times out of ids (``discord.utils.snowflake_time``), so the fake
mints real time-based ids, optionally dated in the past.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading

DISCORD_EPOCH_MS = 1_420_070_400_000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso8601(moment: dt.datetime) -> str:
    """Timestamp in the form Discord sends (``2024-05-01T12:00:00.123000+00:00``)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def snowflake_time(snowflake: int) -> dt.datetime:
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


class SnowflakeFactory:
    """Mints unique, time-ordered snowflakes."""

    def __init__(self, worker_id: int = 1, process_id: int = 0) -> None:
        self._worker = worker_id & 0x1F
        self._process = process_id & 0x1F
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._last = 0

    def new(self, at: dt.datetime | None = None) -> int:
        """A fresh snowflake dated ``at`` (default: now). Unique across calls."""
        moment = at if at is not None else utcnow()
        ms = int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS
        with self._lock:
            increment = next(self._counter) & 0xFFF
            value = (ms << 22) | (self._worker << 17) | (self._process << 12) | increment
            if at is None and value <= self._last:
                # More than 4096 ids in one millisecond or a clock step back: stay monotonic.
                value = self._last + 1
            if at is None:
                self._last = value
            return value
