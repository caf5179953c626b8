"""The one error path and the private answers: every interaction's known errors become a clear
ephemeral reply (checking is_done()/is_expired() before choosing how to answer); a bug is
logged once, with a reference the member can quote."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.discord_adapter import server_errors
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.engine.parts import NotAllowed
from bot.engine.requests import Refusal
from bot.filters import FilterError
from bot.media.limits import MediaError
from bot.review import ReviewError
from bot.store.db import StoreBusy
from bot.store.guilds import SettingsRefused
from bot.store.ledger import LedgerError
from bot.store.moderation import AlreadyHandled
from bot.store.sanctions import LongerBanStands

log = logging.getLogger(__name__)


class UserFacingError(Exception):
    """An error whose text is meant for the member as it is."""


def refusal_text(refusal: Refusal) -> str:
    if refusal.errors:
        lines = [f"**{e.field}**: {sentence(e.message)}" for e in refusal.errors]
        return "Not started, nothing was charged:\n" + "\n".join(lines)
    return f"Not started, nothing was charged: {sentence(refusal.message)}"


def sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def capitalized(text: str) -> str:
    # Only the first letter: str.capitalize() would lowercase "Buzz", "WebP", option names.
    return text[:1].upper() + text[1:]


def media_text(error: MediaError) -> str:
    return f"**{error.option}**: {sentence(error.message)} Nothing was charged."


def describe_error(error: BaseException) -> str | None:
    """Plain words for errors we expect; None for a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, Refusal):
        return refusal_text(error)
    if isinstance(error, MediaError):
        return media_text(error)
    if isinstance(error, SettingsRefused):
        return f"**{error.option}**: {sentence(error.message)}"
    if isinstance(error, NotAllowed):
        return sentence(capitalized(str(error)))
    if isinstance(error, UserFacingError | ReviewError | AlreadyHandled | LongerBanStands):
        return sentence(str(error))
    if isinstance(error, FilterError | LedgerError):
        return f"Not done: {sentence(str(error))}"
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You are not allowed to use this here."
    if isinstance(error, app_commands.TransformerError):
        kind = discord.AppCommandOptionType
        if error.type in (kind.user, kind.mentionable):
            return "That user is not a member of this server (any more)."
        if error.type is kind.channel:
            return "That channel cannot be chosen here: pick a text, voice, forum or stage channel."
        return "That value is not valid here."
    if isinstance(error, StoreBusy) and error.reason == "replaced":
        return (
            "The bot cannot save anything until its operator restarts it (its database file "
            "changed under it); nothing was done or charged."
        )
    if isinstance(error, StoreBusy):
        return "The bot could not save that just now; nothing was done or charged. Try again soon."
    return None


async def reply(interaction: discord.Interaction, text: str, **kwargs: Any) -> None:
    """An ephemeral answer, whatever state the interaction is in."""
    if interaction.is_expired():
        log.info("interaction %s expired before we could answer", interaction.id)
        return
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, **kwargs)
        elif "file" in kwargs or "files" in kwargs:  # a file is consumed by the first try
            await interaction.response.send_message(text, ephemeral=True, **kwargs)
        else:
            another_landed = await first_answer(
                interaction,
                lambda: interaction.response.send_message(text, ephemeral=True, **kwargs),
                discord.InteractionResponseType.channel_message,
            )
            if another_landed:  # an earlier "thinking…" took the first answer: this follows
                await interaction.followup.send(text, ephemeral=True, **kwargs)
    except discord.HTTPException as exc:
        why = discord_fault(exc) or f"Discord answered {exc.status}"
        log.warning("could not answer interaction %s: %s", interaction.id, why)
    except (discord.RateLimited, *NETWORK_ERRORS) as exc:
        why = discord_fault(exc) or type(exc).__name__
        log.warning("could not answer interaction %s: %s", interaction.id, why)


UNKNOWN_INTERACTION = 10062  # not acknowledged within Discord's 3 seconds
ALREADY_ACKNOWLEDGED = 40060


async def first_answer(
    interaction: discord.Interaction,
    send: Callable[[], Awaitable[object]],
    kind: discord.InteractionResponseType,
) -> bool:
    """An interaction's first answer (`send`, of that `kind`). A connection lost on the way
    (or an answer that cannot be read) leaves it unknown whether Discord took it, and its 3
    seconds run: it is sent again at once. "Already acknowledged" then says an earlier try
    landed (ours, or discord.py's own after a 5xx Discord answered to one it had taken).
    True when what landed may be another answer (no try of this one failed): the caller's
    content is then still to be shown, as a follow-up."""
    for tries in (1, 2):
        try:
            with server_errors.watching() as answered_5xx:
                await send()
            return False
        except NETWORK_ERRORS as exc:
            if tries == 2:
                raise
            log.warning(
                "interaction %s: its first answer met %s; sending it again",
                interaction.id,
                type(exc).__name__,
            )
        except discord.HTTPException as exc:
            if exc.code != ALREADY_ACKNOWLEDGED:
                raise
            if tries == 1:
                log.warning(
                    "interaction %s: its first answer was taken after Discord failed it",
                    interaction.id,
                )
            # discord.py never saw it succeed: without this it would answer again (refused)
            # instead of editing that answer and sending follow-ups.
            interaction.response._response_type = kind
            return tries == 1 and not answered_5xx
    return False


def discord_fault(error: BaseException) -> str | None:
    """Plain words for Discord refusing or failing a call we made while answering; None for
    anything else. These are expected (a slow moment, a Discord outage), not bugs."""
    original = getattr(error, "original", error)
    if isinstance(original, discord.RateLimited):  # longer than ratelimits.RATE_LIMIT_WAIT
        return f"Discord asks to wait {original.retry_after:.0f}s (rate limited)"
    if isinstance(original, aiohttp.ClientError):  # a lost connection, an unreadable answer
        return f"no usable answer from Discord ({type(original).__name__})"
    if not isinstance(original, discord.HTTPException):
        return None
    if original.code == UNKNOWN_INTERACTION:
        return "Discord no longer accepts an answer to it (not acknowledged within 3 seconds)"
    if original.code == ALREADY_ACKNOWLEDGED:
        return "it was already acknowledged"
    if isinstance(original, discord.DiscordServerError):
        return f"Discord answered {original.status}"
    return None


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """The one error path: known errors answered clearly, bugs logged once with a reference."""
    if interaction.client.is_closed():
        # Outlived an orderly stop's wait: its connection is closed, nothing can answer it.
        original = getattr(error, "original", error)
        command = interaction.command.qualified_name if interaction.command else "component"
        log.warning(  # the type only: an HTTP error's text may carry the interaction's URL
            "interaction %s (%s): not answered, the bot is stopping (%s)",
            interaction.id,
            command,
            type(original).__name__,
        )
        return
    fault = discord_fault(error)
    if fault is not None:
        command = interaction.command.qualified_name if interaction.command else "component"
        log.warning("interaction %s (%s): %s", interaction.id, command, fault)
        if getattr(getattr(error, "original", error), "code", None) != UNKNOWN_INTERACTION:
            await reply(interaction, "Discord had a problem with that; please try again.")
        return
    text = describe_error(error)
    original = getattr(error, "original", error)
    if isinstance(original, StoreBusy):  # the operator's to fix (a lock held, a full disk)
        log.warning("interaction %s: not done: %s", interaction.id, original)
    if text is None:
        original = getattr(error, "original", error)
        reference = secrets.token_hex(3)
        command = interaction.command.qualified_name if interaction.command else "component"
        log.error(
            "unhandled error (reference %s) in %s for user %s",
            reference,
            command,
            interaction.user.id,
            exc_info=original,
        )
        text = (
            f"Something went wrong on our side (reference `{reference}`). "
            "Nothing was charged for a request that did not start."
        )
    await reply(interaction, text)
