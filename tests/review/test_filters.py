"""The guild's prompt filter: parsing, safe compilation, matching, storage, and the engine holding
what matches (no Discord)."""

from __future__ import annotations

import pytest

from bot.filters import (
    MAX_PATTERN,
    Filter,
    FilterError,
    FilterSet,
    compile_safely,
    normalize,
    parse_pattern,
)
from bot.store.jobs import JobStatus
from bot.store.prompt_filters import add_filter
from tests.review.helpers import GUILD, MOD, OTHER_GUILD, PRICE, Moderation, moderation


def _set(*patterns: str) -> FilterSet:
    filters = []
    for i, raw in enumerate(patterns, start=1):
        pattern, is_regex = parse_pattern(raw)
        filters.append(Filter(i, pattern, is_regex))
    return FilterSet(filters)


# -- normalize ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CASTLE", "castle"),
        ("ＣＡＳＴＬＥ", "castle"),  # fullwidth letters
        ("ｃａｓｔｌｅ", "castle"),
        ("Straße", "strasse"),  # case folding, not just lower()
        ("ﬁre", "fire"),  # the ligature is its compatibility form
        ("  red \t\n  castle  ", "red castle"),
        ("red\u3000castle", "red castle"),  # ideographic space
        ("Ⅻ", "xii"),
    ],
)
def test_normalize_folds_case_compatibility_forms_and_whitespace(text, expected):
    assert normalize(text) == expected


# -- parse_pattern ------------------------------------------------------------------------------
def test_words_and_phrases_are_stored_normalized():
    assert parse_pattern("  Castle ") == ("castle", False)
    assert parse_pattern("Red   CASTLE") == ("red castle", False)
    assert parse_pattern("ＣＡＳＴＬＥ") == ("castle", False)


def test_a_re_prefix_makes_a_regex_stored_as_written():
    assert parse_pattern("re:c[a4]stle") == ("c[a4]stle", True)
    assert parse_pattern("RE:  C[A4]stle ") == ("C[A4]stle", True)


@pytest.mark.parametrize("raw", ["", "   ", "re:", "re:   "])
def test_empty_patterns_are_refused(raw):
    with pytest.raises(FilterError, match="empty"):
        parse_pattern(raw)


@pytest.mark.parametrize("prefix", ["", "re:"])
def test_patterns_over_200_characters_are_refused_with_the_limit(prefix):
    assert MAX_PATTERN == 200
    assert parse_pattern(prefix + "b" * MAX_PATTERN)[0] == "b" * MAX_PATTERN
    with pytest.raises(FilterError) as refused:
        parse_pattern(prefix + "b" * (MAX_PATTERN + 1))
    assert "201" in str(refused.value) and "200" in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("re:(unclosed", "missing )"),
        ("re:[a-", "unterminated character set"),
        ("re:*x", "nothing to repeat"),
        ("re:a{2,1}", "min repeat greater than max repeat"),
    ],
)
def test_an_invalid_regex_is_refused_naming_the_problem(raw, problem):
    with pytest.raises(FilterError) as refused:
        parse_pattern(raw)
    assert "not a valid regular expression" in str(refused.value)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    "raw",
    [
        "re:(a+)+$",
        "re:(x+x+)+y",
        "re:(a|aa)+$",
        "re:(a|a)*$",
        "re:(\\w+\\s?)+$",
        # The same shapes on letters and classes the fixed probes do not spell out.
        "re:(b+)+$",
        "re:(\\d+)+$",
        "re:(q+q+)+z",
        "re:(e+)+!",
    ],
)
def test_catastrophic_backtracking_is_refused_at_add_time_with_a_reason(raw):
    with pytest.raises(FilterError, match="too long to check"):
        parse_pattern(raw)


@pytest.mark.parametrize("raw", ["re:a*", "re:(?:)", "re:x?", "re:^"])
def test_a_regex_that_matches_every_prompt_is_refused(raw):
    with pytest.raises(FilterError, match="matches everything"):
        parse_pattern(raw)


@pytest.mark.parametrize(
    ("raw", "prompt"),
    [
        ("re:c[a4]stle", "a c4stle"),
        ("re:\\bkill\\s+(?:your)?self\\b", "kill yourself"),
        ("re:nud(e|ity)", "nudity"),
        ("re:\\d{3}-\\d{4}", "call 555-1234"),
        ("re:.*dragon.*fire", "a dragon breathing fire"),
    ],
)
def test_ordinary_regexes_are_accepted(raw, prompt):
    pattern, is_regex = parse_pattern(raw)
    assert is_regex and pattern == raw.removeprefix("re:")
    assert compile_safely(pattern).search(prompt) is not None


# -- matching -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prompt", "held"),
    [
        ("a castle at dawn", True),
        ("CASTLE", True),
        ("a Castle!", True),
        ("the castle's gate", True),  # an apostrophe is not part of the word
        ("castle-town", True),  # nor is a hyphen
        ("ＣＡＳＴＬＥ on a hill", True),  # fullwidth
        ("castles", False),  # whole words only
        ("sandcastle", False),
        ("castle_keep", False),  # an underscore is a word character
        ("castle2", False),
        ("a cast le", False),
        ("", False),
    ],
)
def test_a_word_matches_whole_words_case_insensitively(prompt, held):
    assert (_set("castle").match(prompt) is not None) is held


@pytest.mark.parametrize(
    ("prompt", "held"),
    [
        ("a red castle", True),
        ("RED   Castle", True),  # any whitespace between the words
        ("red\ncastle", True),
        ("ｒｅｄ　ｃａｓｔｌｅ", True),  # fullwidth letters and space
        ("red castles", False),
        ("bored castle", False),
        ("red, castle", False),  # a phrase is the words next to each other
        ("castle red", False),
    ],
)
def test_a_phrase_matches_the_words_in_order_at_word_boundaries(prompt, held):
    assert (_set("Red Castle").match(prompt) is not None) is held


@pytest.mark.parametrize(
    "prompt",
    [
        "a cas\u200btle",  # zero-width space
        "a cas\u200ctle",  # zero-width non-joiner
        "a cas\u200dtle",  # zero-width joiner
        "a cas\u2060tle",  # word joiner
        "a cas\ufefftle",  # BOM
        "a cas\u00adtle",  # soft hyphen
        "a c\u034fastle\ufe0f",  # combining grapheme joiner, variation selector
        "a cas\U000e0041tle",  # a tag character
        "a \u200bcastle\u200b",
        "a cástle",  # accents, precomposed or not
        "a ca\u0301stle",
        "a c\u0337a\u0337s\u0337t\u0337l\u0337e\u0337",  # overlays (zalgo)
        "a _castle_",  # Discord italics and underline
        "a __castle__",
        "a cas**tle**",  # markdown inside the word
        "a c||ast||le",
        "a ~~c~~astle",
    ],
)
def test_invisible_characters_accents_and_markdown_do_not_hide_a_word(prompt):
    assert _set("castle").match(prompt) is not None


@pytest.mark.parametrize(
    "prompt",
    ["red \u200bcastle", "red **castle**", "_red_ _castle_", "||red|| ||castle||", "réd cästle"],
)
def test_markdown_or_invisible_characters_around_a_phrases_words_do_not_hide_it(prompt):
    assert _set("red castle").match(prompt) is not None


@pytest.mark.parametrize(
    ("pattern", "prompt"),
    [
        ("ass", "a class act"),
        ("ass", "a cl\u200bass act"),
        ("castle", "castle_keep"),
        ("castle", "sand\u200bcastle"),
        ("castle", "castles"),
        ("red castle", "red_castle"),
        ("red castle", "red, **castle**"),
    ],
)
def test_folding_keeps_whole_words_whole(pattern, prompt):
    assert _set(pattern).match(prompt) is None


def test_turkish_dotted_capital_i_folds_to_i():
    assert _set("istanbul").match("İSTANBUL at night") is not None


def test_a_regex_sees_the_prompt_as_written_and_folded():
    assert _set("re:c[a4]stle").match("a c\u200b4stle") is not None
    assert _set("re:c[a4]stle").match("a c\u0337a\u0337stle") is not None
    assert _set("re:año").match("feliz año") is not None, "accents in a regex still match"
    assert _set("re:año").match("el ano") is None


def test_a_regex_with_a_letter_that_case_folds_to_two_still_matches():
    """The prompt is casefolded (ß becomes ss): the regex must fold the same way."""
    assert _set("re:straße").match("die Straße") is not None
    assert _set("re:straße").match("DIE STRASSE") is not None


@pytest.mark.parametrize("raw", ["\u200b", "\u200b\u200d\u2060", "**", "||", "\u00ad"])
def test_a_word_of_only_invisible_characters_or_markdown_is_refused(raw):
    with pytest.raises(FilterError, match="empty"):
        parse_pattern(raw)


def test_a_regex_matches_anywhere_case_insensitively_on_the_normalized_prompt():
    filters = _set("re:c[a4]stle")
    assert filters.match("C4STLE") is not None
    assert filters.match("ｃ４ｓｔｌｅ") is not None, "fullwidth forms are normalized first"
    assert filters.match("sandcastles") is not None, "a regex is not bounded to whole words"
    assert filters.match("cstle") is None


def test_the_first_matching_filter_is_reported():
    filters = _set("dragon", "re:c[a4]stle", "castle")
    hit = filters.match("a dragon near a castle")
    assert hit == Filter(1, "dragon", False) and hit.shown() == "dragon"
    assert filters.match("a c4stle").shown() == "re:c[a4]stle"
    assert filters.match("a lighthouse") is None


def test_a_match_that_times_out_holds_rather_than_letting_it_through():
    hostile = Filter(7, "(a+)+$", True)  # stored before probing caught it, say
    filters = FilterSet([Filter(1, "castle", False), hostile])
    assert filters.match("a lighthouse") is None
    assert filters.match("a" * 5000 + "!") is hostile


# -- PromptFilters: storage and per-guild sets --------------------------------------------------
async def test_add_list_match_and_remove(tmp_path):
    async with moderation(tmp_path) as m:
        f = m.filters
        castle = await f.add(GUILD, "Castle", actor_id=MOD)
        regex = await f.add(GUILD, "re:dr[a4]gon", actor_id=MOD)
        phrase = await f.add(GUILD, "red  moon", actor_id=MOD)
        assert (castle.pattern, castle.is_regex) == ("castle", False)
        assert regex.shown() == "re:dr[a4]gon" and phrase.pattern == "red moon"
        assert await f.rules(GUILD) == [castle, regex, phrase], "listed in the order added"
        reason = await f.match(GUILD, "a CASTLE")
        assert reason is not None and "'castle'" in reason and f"#{castle.id}" in reason
        assert "re:dr[a4]gon" in (await f.match(GUILD, "dr4gon") or "")
        assert await f.match(GUILD, "a lighthouse") is None

        assert await f.remove(GUILD, "CASTLE", actor_id=MOD) is not None
        assert await f.match(GUILD, "a castle") is None, "the compiled set is refreshed"
        assert await f.remove(GUILD, "castle", actor_id=MOD) is None
        assert await f.remove(GUILD, "dr[a4]gon", actor_id=MOD) is None, "a word, not the regex"
        assert await f.remove(GUILD, "re:dr[a4]gon", actor_id=MOD) is not None
        assert await f.rules(GUILD) == [phrase]

        added = [e.target for e in await m.audit("filter.add")]
        removed = [e.target for e in await m.audit("filter.remove")]
        assert added == ["castle", "dr[a4]gon", "red moon"]
        assert removed == ["castle", "dr[a4]gon"]


@pytest.mark.parametrize("again", ["castle", "CASTLE", " castle ", "ｃａｓｔｌｅ"])
async def test_a_duplicate_is_refused(tmp_path, again):
    async with moderation(tmp_path) as m:
        await m.filters.add(GUILD, "castle", actor_id=MOD)
        with pytest.raises(FilterError, match="already"):
            await m.filters.add(GUILD, again, actor_id=MOD)
        assert len(await m.filters.rules(GUILD)) == 1
        assert len(await m.audit("filter.add")) == 1


async def test_a_word_differing_only_in_accents_or_invisible_characters_is_a_duplicate(tmp_path):
    async with moderation(tmp_path) as m:
        await m.filters.add(GUILD, "café", actor_id=MOD)
        for again in ("cafe", "ca\u200bfé", "CAFE"):
            with pytest.raises(FilterError, match="already"):
                await m.filters.add(GUILD, again, actor_id=MOD)
        assert [f.pattern for f in await m.filters.rules(GUILD)] == ["café"]
        assert await m.filters.match(GUILD, "a cafe") is not None


async def test_a_word_stored_with_invisible_characters_matches_and_can_be_removed(tmp_path):
    async with moderation(tmp_path) as m:
        # Stored before normalize() removed invisible characters.
        for old in ("cas\u200btle", "\u200b"):
            await m.h.db.write(add_filter, GUILD, old, False, actor_id=MOD, now=m.clock())
        assert await m.filters.match(GUILD, "a lighthouse") is None, "never matches everything"
        assert await m.filters.match(GUILD, "a castle") is not None
        assert await m.filters.remove(GUILD, "cas\u200btle", actor_id=MOD) is not None
        assert [f.pattern for f in await m.filters.rules(GUILD)] == ["\u200b"]


async def test_the_same_text_as_a_word_and_as_a_regex_are_two_filters(tmp_path):
    async with moderation(tmp_path) as m:
        await m.filters.add(GUILD, "castle", actor_id=MOD)
        await m.filters.add(GUILD, "re:castle", actor_id=MOD)
        assert [f.shown() for f in await m.filters.rules(GUILD)] == ["castle", "re:castle"]


async def test_a_refused_pattern_stores_nothing(tmp_path):
    async with moderation(tmp_path) as m:
        for raw in ("re:(a+)+$", "re:(unclosed", "x" * 201, "  "):
            with pytest.raises(FilterError):
                await m.filters.add(GUILD, raw, actor_id=MOD)
        assert await m.filters.rules(GUILD) == []
        assert await m.audit("filter.add") == []


async def test_filters_are_per_guild(tmp_path):
    async with moderation(tmp_path) as m:
        await m.filters.add(GUILD, "castle", actor_id=MOD)
        assert await m.filters.match(GUILD, "a castle") is not None
        assert await m.filters.match(OTHER_GUILD, "a castle") is None
        assert await m.filters.rules(OTHER_GUILD) == []
        # The same pattern may exist in both; removing it in one leaves the other's.
        await m.filters.add(OTHER_GUILD, "castle", actor_id=MOD)
        assert await m.filters.remove(OTHER_GUILD, "castle", actor_id=MOD)
        assert await m.filters.match(GUILD, "a castle") is not None
        assert await m.filters.match(OTHER_GUILD, "a castle") is None


# -- through the engine ------------------------------------------------------------------------
async def _submit(m: Moderation, prompt: str):
    return await m.h.engine.submit(m.request(prompt))


async def test_a_matching_prompt_is_held_and_the_member_never_sees_the_pattern(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        await m.filters.add(GUILD, "re:dr[a4]gon", actor_id=MOD)
        job = await _submit(m, "A DR4GON over the sea")
        assert job.status is JobStatus.HELD and job.hold_amount == PRICE
        [(item, _)] = m.h.reviews.items
        assert item.kind == "held" and "dr[a4]gon" in (item.reason or "")
        for message in m.h.publisher.messages(job.id):
            assert "dr" not in message.lower() and "[" not in message and "filter" not in message
        assert m.h.sim.submissions == []


async def test_a_prompt_that_does_not_match_runs(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        await m.filters.add(GUILD, "castle", actor_id=MOD)
        job = await _submit(m, "sandcastles on the beach")
        assert job.status is JobStatus.QUEUED
        await m.h.settle_all()
        assert (await m.h.job(job.id)).status is JobStatus.DONE
        assert m.h.reviews.items == []


async def test_a_filter_added_or_removed_takes_effect_on_the_next_prompt(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        assert (await _submit(m, "a castle")).status is JobStatus.QUEUED
        await m.filters.add(GUILD, "castle", actor_id=MOD)
        assert (await _submit(m, "a castle")).status is JobStatus.HELD
        await m.filters.remove(GUILD, "castle", actor_id=MOD)
        assert (await _submit(m, "a castle")).status is JobStatus.QUEUED
        await m.h.settle_all()


async def test_a_stored_pattern_that_times_out_holds_the_job(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        # As if it had been stored before the probes caught its shape.
        await m.h.db.write(add_filter, GUILD, "(a+)+$", True, actor_id=MOD, now=m.clock())
        assert (await _submit(m, "a lighthouse")).status is JobStatus.QUEUED
        job = await _submit(m, "a" * 5000 + "!")
        assert job.status is JobStatus.HELD
        [(item, _)] = m.h.reviews.items
        assert item.job_id == job.id and "(a+)+$" in (item.reason or "")
        await m.h.settle_all()
