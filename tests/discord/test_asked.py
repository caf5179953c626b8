"""Unanswered questions kept in memory (confirmations, offers, tools' Confirm): a member's
cannot grow past a few, nor past a byte budget, since each may hold images fetched for it."""

from __future__ import annotations

import pytest

from bot.discord_adapter.asked import PER_MEMBER_BYTES, Asked, image_bytes
from bot.discord_adapter.replies import UserFacingError
from bot.store.jobs import SourceImage

MB = 1024 * 1024


def asked() -> Asked[bytes]:
    return Asked(600, "expired", "not yours", size=len)


def test_a_members_questions_holding_large_images_keep_within_the_byte_budget() -> None:
    """Upscale pressed on three 30 MB results (the bot fetches its own posts back up to
    100 MB) held 90 MB for one member: the oldest questions expire to stay in budget; the
    newest is always kept, and other members' are untouched."""
    questions = asked()
    other = questions.put(2, b"x" * (30 * MB))
    tokens = [questions.put(1, b"x" * (30 * MB)) for _ in range(3)]
    for old in tokens[:-1]:
        with pytest.raises(UserFacingError, match="expired"):
            questions.take(old, 1)
    assert len(questions.take(tokens[-1], 1)) == 30 * MB
    assert len(questions.take(other, 2)) == 30 * MB
    assert 30 * MB * 2 > PER_MEMBER_BYTES


def test_small_questions_are_kept_up_to_the_count_limit() -> None:
    questions = asked()
    tokens = [questions.put(1, b"small") for _ in range(5)]
    assert [questions.take(t, 1) for t in tokens] == [b"small"] * 5


def test_an_image_a_question_holds_twice_counts_once() -> None:
    """A re-roll's request carries the very sources the question keeps: counted twice, its
    questions reached the budget at half the images and expired early."""
    source = SourceImage("image", "image/png", 64, 64, b"x" * MB)
    assert image_bytes((source,), (source,)) == MB
    assert image_bytes(None, (source,)) == MB
