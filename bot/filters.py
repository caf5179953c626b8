"""The guild's prompt filter: words and phrases (case-insensitive, whole words) and optional
regular expressions written by moderators, compiled safely.

A moderator's regex could backtrack catastrophically; patterns are bounded in length, probed
against hostile inputs with a time limit before they are accepted, and every match runs with a
timeout (the `regex` module's). A match that still times out holds the job for review rather
than letting it through, and is logged so the pattern can be fixed.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import regex

from bot.store.db import Database, utcnow
from bot.store.prompt_filters import add_filter, filter_rules, remove_filter

log = logging.getLogger(__name__)

REGEX_PREFIX = "re:"
MAX_PATTERN = 200
MATCH_TIMEOUT = 0.05
PROBE_TIMEOUT = 0.05
# Inputs that make badly written patterns backtrack for ever.
_PROBES = ("a" * 5000 + "!", "x" * 5000, "ab" * 2500 + "c", " " * 5000 + "!", "aaa-" * 1250)


class FilterError(ValueError):
    """A pattern a moderator cannot add, with the reason in plain words."""


@dataclass(frozen=True)
class Filter:
    id: int
    pattern: str  # as stored: a word/phrase, or the regex without its "re:" prefix
    is_regex: bool

    def shown(self) -> str:
        return f"{REGEX_PREFIX}{self.pattern}" if self.is_regex else self.pattern


def normalize(text: str) -> str:
    """Case-folded, compatibility-normalized, whitespace collapsed: ｃａｓｔｌｅ = castle."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def parse_pattern(raw: str) -> tuple[str, bool]:
    """('castle', False) for a word or phrase; ('c[a4]stle', True) for 're:c[a4]stle'."""
    text = raw.strip()
    is_regex = text.lower().startswith(REGEX_PREFIX)
    if is_regex:
        text = text[len(REGEX_PREFIX) :].strip()
    if not text:
        raise FilterError("the pattern is empty")
    if len(text) > MAX_PATTERN:
        raise FilterError(f"the pattern is {len(text)} characters; at most {MAX_PATTERN}")
    if is_regex:
        compile_safely(text)
        return text, True
    return normalize(text), False


def compile_safely(pattern: str) -> regex.Pattern[str]:
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE | regex.UNICODE)
    except regex.error as exc:
        raise FilterError(f"not a valid regular expression: {exc}") from None
    for probe in _probes(pattern):
        try:
            compiled.search(probe, timeout=PROBE_TIMEOUT)
        except TimeoutError:
            raise FilterError(
                "this pattern can take too long to check (nested repetition such as (a+)+); "
                "simplify it"
            ) from None
    if compiled.search("", timeout=PROBE_TIMEOUT):
        raise FilterError("this pattern matches everything, even an empty prompt")
    return compiled


def _probes(pattern: str) -> list[str]:
    """The fixed inputs, plus a long run of each letter or digit the pattern names (with and
    without a tail): (b+)+$ and (\\d+)+$ are as hostile as (a+)+$."""
    own = dict.fromkeys(["1", *(c for c in pattern.casefold() if c.isalnum())])
    runs = [c * 5000 for c in own]
    return [*_PROBES, *runs, *(run + "!" for run in runs)]


def _phrase(text: str) -> regex.Pattern[str]:
    words = [regex.escape(w) for w in text.split()]
    return regex.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")


def _stored(pattern: str) -> regex.Pattern[str]:
    # Probed when it was added; not again here: a wall-clock probe failing under load would make
    # every prompt in the guild raise instead of being checked (the match timeout still holds).
    return regex.compile(pattern, regex.IGNORECASE | regex.UNICODE)


class FilterSet:
    """One guild's compiled filters."""

    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters
        self._compiled = [
            (f, _stored(f.pattern) if f.is_regex else _phrase(f.pattern)) for f in filters
        ]

    def match(self, prompt: str) -> Filter | None:
        text = normalize(prompt)
        for item, pattern in self._compiled:
            try:
                if pattern.search(text, timeout=MATCH_TIMEOUT, concurrent=True):
                    return item
            except TimeoutError:
                log.warning("filter #%d timed out on a prompt; holding it for review", item.id)
                return item
        return None


class PromptFilters:
    """The guild filters the engine consults at admission; compiled once per change."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self._sets: dict[int, FilterSet] = {}

    async def rules(self, guild_id: int) -> list[Filter]:
        return [Filter(*rule) for rule in await filter_rules(self.db, guild_id)]

    async def match(self, guild_id: int, prompt: str) -> str | None:
        """The review item's reason when the prompt matches (moderators see it, members never)."""
        found = self._sets.get(guild_id)
        if found is None:
            found = self._sets[guild_id] = FilterSet(await self.rules(guild_id))
        # A slow pattern may take up to its timeout: keep it off the event loop.
        hit = await asyncio.to_thread(found.match, prompt) if found.filters else None
        return f"matched the prompt filter {hit.shown()!r} (#{hit.id})" if hit else None

    async def add(self, guild_id: int, raw: str, actor_id: int) -> Filter:
        pattern, is_regex = parse_pattern(raw)
        new_id = await self.db.write(
            add_filter, guild_id, pattern, is_regex, actor_id=actor_id, now=self.clock()
        )
        self._sets.pop(guild_id, None)
        if new_id is None:
            raise FilterError(f"{raw.strip()!r} is already in this server's filter")
        return Filter(new_id, pattern, is_regex)

    async def remove(self, guild_id: int, raw: str, actor_id: int) -> bool:
        text = raw.strip()
        is_regex = text.lower().startswith(REGEX_PREFIX)
        pattern = text[len(REGEX_PREFIX) :].strip() if is_regex else normalize(text)
        removed = await self.db.write(
            remove_filter, guild_id, pattern, is_regex, actor_id=actor_id, now=self.clock()
        )
        self._sets.pop(guild_id, None)
        return removed
