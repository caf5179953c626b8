"""The HTTP rules the clients share: Retry-After, backoff, loopback."""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime, timedelta

import pytest

from bot import net


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert net.retry_after("7") == 7.0
    assert net.retry_after(" 1.5 ") == 1.5
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (net.retry_after(later) or 0) <= 30
    past = email.utils.format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert net.retry_after(past) == 0.0
    assert net.retry_after("soon") is None and net.retry_after(None) is None


def test_openai_milliseconds_win_over_retry_after() -> None:
    assert net.retry_after_ms({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert net.retry_after_ms({"retry-after-ms": "x", "retry-after": "9"}) == 9.0
    assert net.retry_after_ms({}) is None


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_grows_within_its_ceiling_and_honours_the_server(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(4.0, 0.5 * 2**attempt)
    delay = net.backoff(attempt, None, max_delay=4.0, max_retry_after=60, rng=rng)
    assert ceiling / 2 <= delay <= ceiling
    asked = net.backoff(attempt, 30.0, max_delay=4.0, max_retry_after=60, rng=rng)
    assert asked == 30.0
    capped = net.backoff(attempt, 3600.0, max_delay=4.0, max_retry_after=60, rng=rng)
    assert capped == 60


def test_loopback_hosts() -> None:
    assert net.is_loopback("localhost") and net.is_loopback("127.0.0.1")
    assert net.is_loopback("::1")
    assert not net.is_loopback("cdn.discordapp.com") and not net.is_loopback("10.0.0.1")
