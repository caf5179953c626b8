"""What a member refused for lack of Buzz (or the guild's budget) could have instead: the
catalog's cheaper variants (bot.catalog.offers) within what they can spend right now — the
smaller of their balance and what is left of the guild's budget. Nothing is held: a chosen
offer goes through admission like any request."""

from __future__ import annotations

from dataclasses import replace

from bot.catalog import CatalogError
from bot.catalog.names import Model
from bot.catalog.offers import Offer, cheaper_variants
from bot.catalog.request import RequestOptions
from bot.engine.parts import Parts
from bot.engine.requests import JobRequest, Refusal, RefusalReason
from bot.store.db import Conn
from bot.store.jobs import SOURCE_REF

# Refusals an offer can answer: the others (a ban, an invalid option...) have no cheaper way.
MONEY = frozenset({RefusalReason.BALANCE, RefusalReason.BUDGET})


class Offers:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    async def spendable(self, request: JobRequest) -> int:
        """What the member can spend now: balance, capped by the guild's budget left."""
        parts, who = self.parts, request.requester
        settings = await parts.guilds.settings(who.guild_id)

        def read(conn: Conn) -> int:
            balance = parts.ledger.balance_in(conn, who.guild_id, who.member_id, who.roles)
            available = balance.available
            if settings.budget_amount is not None:
                budget = parts.ledger.budget_in(
                    conn, who.guild_id, settings.budget_amount, settings.budget_period
                )
                available = min(available, budget.remaining or 0)
            return max(0, available)

        return await parts.db.read(read)

    async def for_refusal(self, request: JobRequest, refusal: Refusal) -> list[Offer]:
        """Cheaper variants for a refusal over money; none for any other refusal."""
        if refusal.reason not in MONEY:
            return []
        settings = await self.parts.guilds.settings(request.requester.guild_id)
        spendable = await self.spendable(request)
        images = [s for s in request.sources if s.role == "image"]
        options = request.options
        if request.sources:
            refs = tuple(
                f"{SOURCE_REF}{i}" for i, s in enumerate(request.sources) if s.role == "image"
            )
            mask = next((i for i, s in enumerate(request.sources) if s.role == "mask"), None)
            options = options.with_sources(refs, None if mask is None else f"{SOURCE_REF}{mask}")
        size = (images[0].width, images[0].height) if images and images[0].width else None

        def price(model: Model, variant: RequestOptions) -> int | None:
            """What admission would hold for the variant: the lane's price, not the catalog's."""
            try:
                asked = replace(request, model=model, options=variant)
                return self.parts.lane.validate(asked, variant, size).buzz
            except CatalogError:
                return None

        return cheaper_variants(
            request.model,
            request.operation,
            options,
            spendable=spendable,
            enabled=settings.model_enabled,
            input_size=size,
            price=price,
        )
