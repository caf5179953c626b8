"""Small rules every HTTP client of the bot shares: how long a Retry-After asks us to wait,
how long to back off between tries, which hosts are this machine, reading a body under a byte
cap, a URL shown without the credentials written into it, and starting a built-in simulator."""

from __future__ import annotations

import email.utils
import io
import ipaddress
import random
from collections.abc import AsyncIterable, Mapping
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's wait in seconds: a number, or an HTTP date (None if neither)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_after_ms(headers: Mapping[str, str]) -> float | None:
    """OpenAI's retry-after-ms when it is given, else Retry-After."""
    millis = (headers.get("retry-after-ms") or "").strip()
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return retry_after(headers.get("retry-after"))


def backoff(
    attempt: int,
    retry_after: float | None,
    *,
    max_delay: float,
    max_retry_after: float,
    rng: random.Random,
) -> float:
    """Exponential backoff with jitter (from 0.5 s, halved-to-full of the ceiling); a server's
    Retry-After is honoured up to `max_retry_after`."""
    ceiling = min(max_delay, 0.5 * 2**attempt)
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


def is_loopback(host: str) -> bool:
    """localhost or a loopback address: where plain http is allowed (the simulators)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Names only a local network resolves: a compose/LAN service, mDNS, RFC 8375's home.arpa.
_LOCAL_SUFFIXES = (".local", ".internal", ".lan", ".home.arpa")


def is_private_network(host: str) -> bool:
    """This machine or its own network (a private or link-local address, a dotless service
    name, a local-only domain): where a self-hosted server may be reached over plain http."""
    if is_loopback(host) or ("." not in host and ":" not in host):
        return True
    if host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_link_local


async def read_capped(chunks: AsyncIterable[bytes], cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of a body, and whether it went on past them (reading stops there).
    One growing buffer, handed over without a copy: collecting the chunks and joining them
    held every large download twice (36 MB at once for an 18 MB 4K PNG)."""
    buffer = io.BytesIO()
    async for chunk in chunks:
        room = cap - buffer.tell()
        if len(chunk) > room:
            buffer.write(chunk[:room])
            return buffer.getvalue(), True
        buffer.write(chunk)
    return buffer.getvalue(), False


def without_credentials(url: str) -> str:
    """The URL to show (logs, check-config, reprs): any user:password@ in it left out."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


# What RFC 3986 leaves unencoded in a userinfo besides letters, digits and "_.-~".
_USERINFO_SAFE = "!$&'()*+,;=:"


def url_secrets(url: str) -> list[str]:
    """The credentials written into a URL (its user:password@), for the log redaction: as
    written, decoded, and percent-encoded as the HTTP clients log them (httpx writes the
    request line of p@ss as p%40ss)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    found: list[str] = []
    for text in (userinfo, *(p for p in userinfo.split(":", 1)[1:] if p)):
        plain = unquote(text)
        for form in (text, plain, quote(plain, safe=_USERINFO_SAFE)):
            if form not in found:
                found.append(form)
    return found


class SimulatorUnavailable(Exception):
    """The built-in simulator cannot listen on BOT_SIMULATOR__PORT: the operator's to fix."""


class _Server(Protocol):
    async def start(self, host: str = ..., port: int = ...) -> str: ...


async def start_simulator(server: _Server, port: int) -> str:
    """Start a built-in simulator on this machine; returns its base URL. A port another program
    holds (or one this user may not open) is one sentence naming the setting, not a traceback."""
    try:
        return await server.start(port=port)
    except OSError as exc:
        raise SimulatorUnavailable(
            f"cannot start the built-in simulator on 127.0.0.1:{port} ({exc.strerror or exc}); "
            "change BOT_SIMULATOR__PORT (0 picks a free port)"
        ) from None
