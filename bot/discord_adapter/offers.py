"""Offers instead of a dead end: a request refused for lack of Buzz (or the guild's budget)
answers privately with up to four cheaper variants the member can afford right now, each a
button labelled with its price. Clicking one starts that variant through the normal request
flow — every check again, a confirmation above the threshold — with nothing held until then.

The offers are kept (in the database: a click after a restart is answered too) for ten
minutes, like a pending confirmation, for the member who was refused only, and one of them may
be taken once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.catalog.offers import Offer
from bot.discord_adapter.asked import Asked, image_bytes
from bot.discord_adapter.buttons.base import view_of
from bot.discord_adapter.buttons.offers import OfferButton
from bot.discord_adapter.replies import refusal_text, reply
from bot.discord_adapter.tool_flow import tell
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.engine.requests import JobRequest, Refusal
from bot.media.limits import AttachmentInfo
from bot.store.jobs import SourceImage

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

log = logging.getLogger(__name__)

OFFER_TTL = 600.0
NO_SUCH_OFFER = "There is no such offer. Nothing was charged."


@dataclass(frozen=True)
class OfferSet:
    request: JobRequest
    attachments: tuple[AttachmentInfo, ...]
    sources: tuple[SourceImage, ...] | None
    offers: tuple[Offer, ...]
    enhance: bool


class OfferBoard:
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.asked: Asked[OfferSet] = Asked(
            bot.questions,
            "offer",
            OFFER_TTL,
            "These offers have expired; run the command again. Nothing was charged.",
            "Only the member who asked can take one of these offers.",
            "You already took one of these offers; see its answer above.",
            size=lambda o: image_bytes(o.sources, o.request.sources),
        )

    async def refused(
        self,
        interaction: discord.Interaction,
        request: JobRequest,
        refusal: Refusal,
        *,
        attachments: tuple[AttachmentInfo, ...] = (),
        sources: tuple[SourceImage, ...] | None = None,
        enhance: bool = False,
        edit: bool = False,
    ) -> None:
        """Tell the member privately: the refusal, and its offers as buttons when there are
        any. `edit`: in place of the interaction's private answer (its "thinking…")."""
        token, text, view = await self._refusal(
            interaction, request, refusal, attachments, sources, enhance
        )
        if edit:
            await tell(interaction, text, view)
        elif view is not None and interaction.response.is_done():
            # A follow-up of its own: the expiry is told there.
            try:
                message = await interaction.followup.send(
                    text, view=view, ephemeral=True, wait=True
                )
            except (discord.HTTPException, discord.RateLimited, *NETWORK_ERRORS) as exc:
                log.warning("could not offer interaction %s anything: %s", interaction.id, exc)
            else:
                await self.asked.posted(token, message)
        else:
            await reply(interaction, text, **({"view": view} if view else {}))
        if view is not None:
            view.stop()  # the registered OfferButton answers the clicks

    async def _refusal(
        self,
        interaction: discord.Interaction,
        request: JobRequest,
        refusal: Refusal,
        attachments: tuple[AttachmentInfo, ...],
        sources: tuple[SourceImage, ...] | None,
        enhance: bool,
    ) -> tuple[str, str, discord.ui.View | None]:
        text = refusal_text(refusal)
        try:
            offers = await self.bot.engine.offers.for_refusal(request, refusal)
        except Exception:  # an offer is a courtesy: the refusal is said all the same
            log.exception("offers for a refused request could not be computed")
            offers = []
        if not offers:
            return "", text, None
        offered = OfferSet(request, attachments, sources, tuple(offers), enhance)
        token = await self.asked.put(request.requester.member_id, offered, interaction)
        view = view_of(*(OfferButton(f"{token}-{n}", o.label) for n, o in enumerate(offers)))
        return token, f"{text}\nWhat you can afford right now instead:", view

    async def take(self, interaction: discord.Interaction, key: str) -> None:
        token, _, number = key.partition("-")
        index = int(number)

        def offered(found: OfferSet) -> str | None:
            # A crafted button may name an offer that was never made: the real ones stay.
            return None if index < len(found.offers) else NO_SUCH_OFFER

        found = await self.asked.take(token, interaction.user.id, offered)  # one offer per refusal
        offer = found.offers[index]
        await self.asked.reply(
            interaction, token, found, content=f"Trying {offer.label}…", view=None
        )
        request = found.request
        await self.bot.flow.begin(
            interaction,
            offer.model,
            request.operation,
            offer.options,
            list(found.attachments),
            sources=list(found.sources) if found.sources else None,
            parent_job_id=request.parent_job_id,
            enhance=found.enhance,
        )
