"""Unanswered questions kept in the database (confirmations, offers, tools' Confirm): a
member's cannot grow past a few, nor past a byte budget, since each may hold images fetched
for it; the first answer wins, and one past its time is closed by the sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.discord_adapter.asked import PER_MEMBER_BYTES, Asked, encode, image_bytes
from bot.discord_adapter.replies import UserFacingError
from bot.store.db import Database
from bot.store.jobs import SourceImage
from bot.store.questions import Questions

MB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 9, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(tmp_path / "bot.sqlite3") as database:
        yield database


def asked(db: Database, clock: Clock | None = None) -> Asked[bytes]:
    return Asked(Questions(db, clock or Clock()), "test", 600, "expired", "not yours", size=len)


async def test_a_members_questions_holding_large_images_keep_within_the_byte_budget(db) -> None:
    """Upscale pressed on three 30 MB results (the bot fetches its own posts back up to
    100 MB) held 90 MB for one member: the oldest questions expire to stay in budget; the
    newest is always kept, and other members' are untouched."""
    questions = asked(db)
    other = await questions.put(2, b"x" * (30 * MB))
    tokens = [await questions.put(1, b"x" * (30 * MB)) for _ in range(3)]
    for old in tokens[:-1]:
        with pytest.raises(UserFacingError, match="expired"):
            await questions.take(old, 1)
    assert len(await questions.take(tokens[-1], 1)) == 30 * MB
    assert len(await questions.take(other, 2)) == 30 * MB
    assert 30 * MB * 2 > PER_MEMBER_BYTES


async def test_small_questions_are_kept_up_to_the_count_limit(db) -> None:
    questions = asked(db)
    tokens = [await questions.put(1, b"small") for _ in range(5)]
    assert [await questions.take(t, 1) for t in tokens] == [b"small"] * 5


async def test_the_first_answer_wins_even_from_another_process(db) -> None:
    """Two bots on one database (an old process still stopping, a new one started): the
    question is answered once; the second is told it was answered, another member that it
    is not theirs."""
    first, second = asked(db), asked(db)
    token = await first.put(1, b"q")
    assert await second.take(token, 1) == b"q"
    with pytest.raises(UserFacingError, match="already answered"):
        await first.take(token, 1)
    with pytest.raises(UserFacingError, match="not yours"):
        await first.take(token, 2)


async def test_a_question_past_its_time_is_closed_by_the_sweep_once(db) -> None:
    clock = Clock()
    questions = asked(db, clock)
    token = await questions.put(1, b"q")
    clock.now += timedelta(minutes=11)
    [shown] = await questions.questions.expire_due()
    assert shown.id == token and await questions.questions.expire_due() == []
    with pytest.raises(UserFacingError, match="expired"):
        await questions.take(token, 1)


def test_an_image_a_question_holds_twice_counts_once() -> None:
    """A re-roll's request carries the very sources the question keeps: counted twice, its
    questions reached the budget at half the images and expired early."""
    source = SourceImage("image", "image/png", 64, 64, b"x" * MB)
    assert image_bytes((source,), (source,)) == MB
    assert image_bytes(None, (source,)) == MB


async def test_answered_questions_are_forgotten_a_day_later(db) -> None:
    """An answered question keeps no images, and its row goes after a day (with its
    interaction token); until then a late click is told it was answered."""
    clock = Clock()
    questions = asked(db, clock)
    token = await questions.put(1, b"x" * MB)
    await questions.take(token, 1)
    found = await questions.questions.question(token)
    assert found is not None and found.payload is None
    clock.now += timedelta(hours=23)
    assert await questions.questions.expire_due() == []
    with pytest.raises(UserFacingError, match="already answered"):
        await questions.take(token, 1)
    clock.now += timedelta(hours=2)
    assert await questions.questions.expire_due() == []
    assert await questions.questions.question(token) is None


class _CallsAFunction:
    """A stored question made (by hand, in the database) to call one of the bot's functions
    when read back."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return encode, ("called",)


async def test_a_stored_question_that_would_call_a_function_is_not_read_back(db) -> None:
    """Only the bot's classes, datetimes and plain containers are read back from a stored
    question: a payload naming one of the bot's functions (an edited database file) is
    treated as expired, and the function is never called."""
    questions: Asked[object] = Asked(Questions(db, Clock()), "test", 600, "expired", "not yours")
    token = await questions.put(7, _CallsAFunction())
    with pytest.raises(UserFacingError, match="expired"):
        await questions.take(token, 7)
