"""Questions left unanswered past their time: closed (a click then is told it expired, and
nothing is charged) and their message edited to say so, every minute and once at each start
(those that expired while the bot was down too)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord

from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.store.db import StoreBusy
from bot.store.questions import Shown

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0


async def sweep_questions(bot: ImageBot, every: float = SWEEP_EVERY) -> None:
    while True:
        try:
            await sweep_once(bot)
        except StoreBusy as exc:  # said by the database's own alert; no traceback each minute
            log.warning("unanswered questions not swept: the database is %s", exc.reason)
        except Exception:  # the next sweep tries again; a click is answered meanwhile
            log.exception("unanswered questions could not be swept")
        await asyncio.sleep(every)


async def sweep_once(bot: ImageBot) -> None:
    texts = {a.kind: a.expired for a in (bot.flow.asked, bot.tools.asked, bot.offers.asked)}
    for shown in await bot.questions.expire_due():
        text = texts.get(shown.kind)
        if text is not None:
            await _say_expired(bot, shown, text)


async def _say_expired(bot: ImageBot, shown: Shown, text: str) -> None:
    """Edit the question's message, while its interaction's token still lives."""
    alive = shown.token_expires_at is not None and bot.questions.clock() < shown.token_expires_at
    if not alive or shown.interaction_token is None or shown.application_id is None:
        return
    hook = discord.Webhook.partial(shown.application_id, shown.interaction_token, client=bot)
    hook.type = discord.WebhookType.application  # the interaction's own messages
    try:
        # "@original": the interaction's original response, where most questions are shown.
        message_id: int = shown.message_id or "@original"  # type: ignore[assignment]
        await hook.edit_message(message_id, content=text, embed=None, view=None)
    except discord.HTTPException as exc:  # deleted (dismissed), or the token is gone
        log.info("question %s: expiry not shown (%s)", shown.id, exc.status)
    except (discord.RateLimited, *NETWORK_ERRORS) as exc:
        log.info("question %s: expiry not shown (%s)", shown.id, type(exc).__name__)
