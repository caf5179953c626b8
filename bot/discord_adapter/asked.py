"""What a member was asked and has not answered yet (a confirmation, a set of offers): kept in
memory under a random token for a while; only that member can take it, once."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from bot.discord_adapter.replies import UserFacingError
from bot.store.jobs import SourceImage

T = TypeVar("T")


ANSWERED = "You already answered this; see the answer above."
# Questions one member may leave unanswered at once: each may hold images in memory (an
# upscale's source, a re-roll's), so one member pressing on and on cannot fill it; the oldest
# of theirs expires first.
PER_MEMBER = 5
# ...and the bytes those may hold together (the bot fetches its own results back up to 100 MB).
PER_MEMBER_BYTES = 48 * 1024 * 1024


def image_bytes(*groups: Iterable[SourceImage] | None) -> int:
    """The bytes of the images a question holds (its sources, fetched or downloaded), each
    image once (a re-roll's request carries the very sources it keeps)."""
    held = {id(image): len(image.data) for group in groups for image in group or ()}
    return sum(held.values())


class Asked(Generic[T]):
    def __init__(
        self,
        ttl: float,
        expired: str,
        not_yours: str,
        answered: str = ANSWERED,
        size: Callable[[T], int] | None = None,
    ) -> None:
        """`expired`, `not_yours` and `answered`: what a click is told when it comes too late
        (or after a restart), when someone else clicks, and when it comes after the answer (a
        double click: "expired, nothing was charged" would be wrong after a Confirm). `size`:
        the bytes a value holds (its images)."""
        self.ttl, self.expired, self.not_yours = ttl, expired, not_yours
        self.size = size or (lambda _: 0)
        self.answered = answered
        self._waiting: dict[str, tuple[int, float, T]] = {}
        self._taken: dict[str, tuple[int, float]] = {}

    def put(self, member_id: int, value: T) -> str:
        """Keep `value` for `member_id`; the token its buttons carry."""
        now = time.monotonic()
        for token in [t for t, (_, at, _) in self._waiting.items() if now - at > self.ttl]:
            del self._waiting[token]
        for token in [t for t, (_, at) in self._taken.items() if now - at > self.ttl]:
            del self._taken[token]
        theirs = [
            (t, self.size(v)) for t, (owner, _, v) in self._waiting.items() if owner == member_id
        ]
        held = sum(size for _, size in theirs) + self.size(value)
        # The oldest of theirs expire first; the newest question is always kept.
        while theirs and (len(theirs) >= PER_MEMBER or held > PER_MEMBER_BYTES):
            token, size = theirs.pop(0)
            del self._waiting[token]
            held -= size
        token = secrets.token_hex(8)
        self._waiting[token] = (member_id, now, value)
        return token

    def take(self, token: str, member_id: int, valid: Callable[[T], str | None] | None = None) -> T:
        """The value, gone from here; UserFacingError when expired or not this member's, or
        when `valid` finds something wrong with it (its text; the value stays then)."""
        found = self._waiting.get(token)
        if found is None and token in self._taken:
            owner = self._taken[token][0]
            raise UserFacingError(self.answered if member_id == owner else self.not_yours)
        if found is None or time.monotonic() - found[1] > self.ttl:
            self._waiting.pop(token, None)
            raise UserFacingError(self.expired)
        if member_id != found[0]:
            raise UserFacingError(self.not_yours)
        wrong = valid(found[2]) if valid is not None else None
        if wrong is not None:
            raise UserFacingError(wrong)
        del self._waiting[token]
        self._taken[token] = (member_id, time.monotonic())
        return found[2]
