"""The HTTP rules the clients share: Retry-After, backoff, loopback."""

from __future__ import annotations

import email.utils
import random
from collections.abc import AsyncIterator
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


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.parametrize(
    ("chunks", "cap", "expected"),
    [
        ((b"abc", b"def"), 6, (b"abcdef", False)),  # exactly the cap: all of it
        ((b"abc", b"defg"), 6, (b"abcdef", True)),  # one byte over: cut at the cap, and said
        ((b"abcdefgh",), 3, (b"abc", True)),
        ((), 10, (b"", False)),
    ],
)
async def test_a_body_is_read_whole_up_to_its_cap(
    chunks: tuple[bytes, ...], cap: int, expected: tuple[bytes, bool]
) -> None:
    assert await net.read_capped(_body(*chunks), cap) == expected


async def test_reading_stops_at_the_cap() -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for n in range(1_000):
            pulled.append(n)
            yield bytes(1024)

    data, over = await net.read_capped(endless(), 4096 + 10)
    assert over and len(data) == 4106 and len(pulled) == 5


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://admin:hunter2pass@orch.example.com", "https://orch.example.com"),
        ("https://user@orch.example.com:8443/v1", "https://orch.example.com:8443/v1"),
        ("http://u:p%40ss@[::1]:9000/v1", "http://[::1]:9000/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ],
)
def test_a_url_is_shown_without_the_credentials_written_into_it(url: str, shown: str) -> None:
    assert net.without_credentials(url) == shown


def test_the_credentials_of_a_url_are_secrets_for_the_logs() -> None:
    assert net.url_secrets("https://admin:hunter2pass@host/v1") == [
        "admin:hunter2pass",
        "hunter2pass",
    ]
    assert net.url_secrets("https://host/v1") == []
