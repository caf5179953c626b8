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
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import regex

from bot.store.db import Database, utcnow
from bot.store.prompt_filters import add_filter, filter_rules, remove_filter

log = logging.getLogger(__name__)

REGEX_PREFIX = "re:"
# Full case folding, as the prompt is casefolded: 'straße' in a regex meets 'strasse' there.
_FLAGS = regex.IGNORECASE | regex.FULLCASE | regex.UNICODE
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


# Code points that draw nothing but are not format characters (Cf): the combining grapheme
# joiner, Hangul fillers, Khmer inherent vowels, Mongolian selectors, variation selectors.
_IGNORABLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
)
# The generic accents and overlays (zalgo, strike-through): not the marks of Indic, Thai or
# Arabic scripts, which change the word.
_DIACRITICS = regex.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Discord markdown that styles text without being seen: **bold**, ~~strike~~, ||spoiler||, `code`.
_MARKDOWN = regex.compile(r"[*~|`]")


def _visible(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category != "Cf" and ch not in _IGNORABLE and not "\U000e0100" <= ch <= "\U000e01ef"


def normalize(text: str) -> str:
    """Case-folded, compatibility-normalized, whitespace collapsed, with the characters that draw
    nothing (zero-width space and joiners, soft hyphen, word joiner, BOM ...) removed:
    ｃａｓｔｌｅ = c\u200bastle = castle. Regexes are matched on this."""
    text = unicodedata.normalize("NFKC", text).replace("\u2800", " ")  # braille blank
    visible = "".join(ch for ch in text if _visible(ch))
    return " ".join(unicodedata.normalize("NFC", visible.casefold()).split())


def fold(text: str) -> str:
    """normalize(), then without accents or overlays and without markdown: how words and phrases
    are compared (cástle = c̷a̷s̷t̷l̷e̷ = cas**tle** = castle)."""
    return _fold(normalize(text))


def _fold(normalized: str) -> str:
    bare = _DIACRITICS.sub("", unicodedata.normalize("NFD", normalized))
    return " ".join(_MARKDOWN.sub("", unicodedata.normalize("NFC", bare)).split())


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
    if not fold(text):  # only invisible characters or markdown: it would match everything
        raise FilterError("the pattern is empty once invisible characters and markdown are removed")
    return normalize(text), False


def compile_safely(pattern: str) -> regex.Pattern[str]:
    try:
        compiled = regex.compile(pattern, _FLAGS)
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
    # Stored before fold() existed, a pattern may fold to nothing: it then matches nothing.
    words = [regex.escape(w) for w in (fold(text) or text).split()]
    # Underscores at a word's edges are Discord's _italics_ and __underline__, not a longer word.
    return regex.compile(r"(?<!\w)_*" + r"_*\s+_*".join(words) + r"_*(?!\w)")


def _stored(pattern: str) -> regex.Pattern[str]:
    # Probed when it was added; not again here: a wall-clock probe failing under load would make
    # every prompt in the guild raise instead of being checked (the match timeout still holds).
    return regex.compile(pattern, _FLAGS)


class FilterSet:
    """One guild's compiled filters."""

    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters
        self._compiled = [
            (f, _stored(f.pattern) if f.is_regex else _phrase(f.pattern)) for f in filters
        ]

    def match(self, prompt: str) -> Filter | None:
        text = normalize(prompt)
        folded = _fold(text)
        for item, pattern in self._compiled:
            # A regex sees the prompt as written (accents and all), then folded like the words.
            views = dict.fromkeys((text, folded) if item.is_regex else (folded,))
            try:
                if any(pattern.search(v, timeout=MATCH_TIMEOUT, concurrent=True) for v in views):
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
        if not is_regex:  # 'café' after 'cafe' would be a second row doing the same
            same = [r for r in await self.rules(guild_id) if not r.is_regex]
            for rule in same:
                if fold(rule.pattern) == fold(pattern) and rule.pattern != pattern:
                    raise FilterError(
                        f"{raw.strip()!r} is already in this server's filter as "
                        f"{rule.shown()!r} (#{rule.id})"
                    )
        new_id = await self.db.write(
            add_filter, guild_id, pattern, is_regex, actor_id=actor_id, now=self.clock()
        )
        self._sets.pop(guild_id, None)
        if new_id is None:
            raise FilterError(f"{raw.strip()!r} is already in this server's filter")
        return Filter(new_id, pattern, is_regex)

    async def remove(self, guild_id: int, raw: str, actor_id: int) -> Filter | None:
        """Removes a rule by its text, or by the #id /mod filter-list shows (a long regex is
        not retyped); the rule removed, None when there was none."""
        text = raw.strip()
        is_regex = text.lower().startswith(REGEX_PREFIX)
        pattern = text[len(REGEX_PREFIX) :].strip() if is_regex else normalize(text)
        rules = await self.rules(guild_id)
        # As stored, perhaps with invisible characters normalize() now drops.
        same = [r for r in rules if r.is_regex == is_regex]
        rule = next(
            (r for r in same if (normalize(r.pattern) if not is_regex else r.pattern) == pattern),
            None,
        )
        numbered = re.fullmatch(r"#(\d+)", text)
        if rule is None and numbered:  # a literal '#2' rule goes by its text first
            rule = next((r for r in rules if r.id == int(numbered[1])), None)
        if rule is None:
            return None
        removed = await self.db.write(
            remove_filter,
            guild_id,
            rule.pattern,
            rule.is_regex,
            actor_id=actor_id,
            now=self.clock(),
        )
        self._sets.pop(guild_id, None)
        return rule if removed else None
