"""What a member was asked and has not answered yet (a confirmation, a set of offers): kept in
the database under a random token for a while, so a click after a restart is answered as
before it; only that member can take it, once (the first click wins, in any process)."""

from __future__ import annotations

import io
import logging
import pickle
import secrets
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, TypeVar

import discord

from bot.discord_adapter.interaction import update
from bot.discord_adapter.replies import UserFacingError
from bot.store.jobs import SourceImage
from bot.store.questions import NewQuestion, Questions, QuestionState

T = TypeVar("T")

log = logging.getLogger(__name__)

ANSWERED = "You already answered this; see the answer above."
# Questions one member may leave unanswered at once: each may hold images (an upscale's
# source, a re-roll's), so one member pressing on and on cannot fill the database; the oldest
# of theirs expires first.
PER_MEMBER = 5
# ...and the bytes those may hold together (the bot fetches its own results back up to 100 MB).
PER_MEMBER_BYTES = 48 * 1024 * 1024
# Builtins a stored question may be made of (beyond the bot's own classes and datetimes).
_BUILTINS = frozenset({"set", "frozenset", "tuple", "list", "dict", "bytes", "bytearray"})


def image_bytes(*groups: Iterable[SourceImage] | None) -> int:
    """The bytes of the images a question holds (its sources, fetched or downloaded), each
    image once (a re-roll's request carries the very sources it keeps)."""
    held = {id(image): len(image.data) for group in groups for image in group or ()}
    return sum(held.values())


class _Unpickler(pickle.Unpickler):
    """Only what a question is made of: the bot's own dataclasses, enums and datetimes."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("bot.") or module == "datetime":
            found = super().find_class(module, name)
            if isinstance(found, type):  # a class, never a function to call with its arguments
                return found
        elif module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a question")


def encode(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


class Asked(Generic[T]):
    def __init__(
        self,
        questions: Questions,
        kind: str,
        ttl: float,
        expired: str,
        not_yours: str,
        answered: str = ANSWERED,
        size: Callable[[T], int] | None = None,
    ) -> None:
        """`kind`: which buttons answer these (a token of another kind is unknown here).
        `expired`, `not_yours` and `answered`: what a click is told when it comes too late,
        when someone else clicks, and when it comes after the answer (a double click:
        "expired, nothing was charged" would be wrong after a Confirm). `size`: the bytes a
        value holds (its images)."""
        self.questions, self.kind = questions, kind
        self.ttl, self.expired, self.not_yours = ttl, expired, not_yours
        self.size = size or (lambda _: 0)
        self.answered = answered

    async def put(
        self, member_id: int, value: T, interaction: discord.Interaction | None = None
    ) -> str:
        """Keep `value` for `member_id`; the token its buttons carry. `interaction`: the one
        whose original response shows the question (told there once it expires)."""
        token = secrets.token_hex(8)
        await self.questions.ask(
            NewQuestion(
                id=token,
                kind=self.kind,
                member_id=member_id,
                payload=encode(value),
                size=self.size(value),
                expires_at=self.questions.clock() + timedelta(seconds=self.ttl),
                application_id=interaction.application_id if interaction else None,
                interaction_token=interaction.token if interaction else None,
                token_expires_at=interaction.expires_at if interaction else None,
            ),
            PER_MEMBER,
            PER_MEMBER_BYTES,
        )
        return token

    async def posted(self, token: str, message: discord.Message) -> None:
        """The question went out as a follow-up message of its own."""
        await self.questions.posted(token, message.id)

    async def take(
        self, token: str, member_id: int, valid: Callable[[T], str | None] | None = None
    ) -> T:
        """The value, answered from here on; UserFacingError when expired or not this
        member's, or when `valid` finds something wrong with it (its text; it stays open)."""
        found = await self.questions.question(token)
        if found is None or found.kind != self.kind:
            raise UserFacingError(self.expired)
        if found.state is QuestionState.ANSWERED:
            raise UserFacingError(self.answered if member_id == found.member_id else self.not_yours)
        if found.state is QuestionState.EXPIRED or found.expires_at <= self.questions.clock():
            raise UserFacingError(self.expired)
        if member_id != found.member_id:
            raise UserFacingError(self.not_yours)
        assert found.payload is not None  # open questions keep theirs
        try:
            value: T = decode(found.payload)
        except Exception as exc:  # asked by a version of the bot that kept it differently
            log.info("question %s could not be read back (%s)", token, type(exc).__name__)
            raise UserFacingError(self.expired) from None
        wrong = valid(value) if valid is not None else None
        if wrong is not None:
            raise UserFacingError(wrong)
        if await self.questions.claim(token) is None:  # another click was first, or too late
            again = await self.questions.question(token)
            late = again is None or again.state is not QuestionState.ANSWERED
            raise UserFacingError(self.expired if late else self.answered)
        return value

    async def reply(
        self, interaction: discord.Interaction, token: str, value: T, **changes: Any
    ) -> None:
        """A click's first answer, editing the question (`changes`). Discord forgetting the
        click (its 3 seconds ran out while the database was busy) opens the question again:
        the member sees "This interaction failed", and their next click must be answered,
        not told "you already answered this"."""
        try:
            await update(interaction, **changes)
        except discord.NotFound:
            await self.questions.reopen(token, encode(value))
            raise
