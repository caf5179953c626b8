"""Cheaper variants of a request the member cannot afford: the same model at a lower quality, a
smaller gpt-image-2 tier, fewer images, or another model that is on. Pure: every variant is
validated and priced by the catalog itself, so an offer is exactly what admission will see.

Each kind of change contributes its best affordable variant (the dearest the member can pay:
the closest to what they asked) in turn — quality, size, quantity, model — then the next best
of each, up to `limit`; the offers are listed dearest first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.catalog.capabilities import capability
from bot.catalog.errors import CatalogError
from bot.catalog.names import Model, Operation
from bot.catalog.pricing import GPT2_TIERS
from bot.catalog.replacement import PREFERENCE
from bot.catalog.request import ImageRequest, RequestOptions, build_request
from bot.catalog.sizes import GPT2_MULTIPLE

# Each model's qualities, dearest first (dall-e-3's do not change its price; dall-e-2 has none).
QUALITIES: dict[Model, tuple[str, ...]] = {
    Model.GPT_IMAGE_2: ("high", "medium", "low"),
    Model.GPT_IMAGE_1_5: ("high", "medium", "low"),
    Model.GPT_IMAGE_1: ("high", "auto", "medium", "low"),
}
KINDS = ("quality", "size", "quantity", "model")
LIMIT = 4
# The price a lane holds and charges for a variant (options with the request's sources), or None
# when the lane refuses it. Without one, the catalog's own (the Civitai table) is the price.
Pricer = Callable[[Model, RequestOptions], int | None]


@dataclass(frozen=True)
class Offer:
    kind: str
    model: Model
    options: RequestOptions
    buzz: int
    label: str  # what the button says: "medium · 78 Buzz"


def cheaper_variants(
    model: Model,
    operation: Operation,
    options: RequestOptions,
    *,
    spendable: int,
    enabled: Callable[[str], bool],
    input_size: tuple[int, int] | None = None,
    other_models: bool = True,
    limit: int = LIMIT,
    price: Pricer | None = None,
) -> list[Offer]:
    """Up to `limit` variants costing at most `spendable` (and less than the request), each
    priced by `price` (the lane's) when given: what the button says is what is held."""
    asked = _priced(model, operation, options, input_size)
    if asked is None or spendable <= 0:
        return []
    asked_buzz = price(model, options) if price is not None else asked.buzz
    if asked_buzz is None:
        return []
    kinds = {
        "quality": _qualities(asked, options, input_size, price),
        "size": _sizes(asked, options, input_size, price),
        "quantity": _quantities(asked, options, input_size, price),
        "model": _models(asked, options, enabled, price) if other_models else [],
    }
    affordable = {
        kind: sorted(
            (o for o in found if o.buzz <= spendable and o.buzz < asked_buzz),
            key=lambda o: -o.buzz,
        )
        for kind, found in kinds.items()
    }
    chosen: list[Offer] = []
    seen: set[tuple[Model, RequestOptions]] = set()
    depth = 0
    while len(chosen) < limit and any(len(v) > depth for v in affordable.values()):
        for kind in KINDS:
            found = affordable[kind]
            if depth < len(found) and len(chosen) < limit:
                offer = found[depth]
                if (offer.model, offer.options) not in seen:
                    seen.add((offer.model, offer.options))
                    chosen.append(offer)
        depth += 1
    return sorted(chosen, key=lambda o: -o.buzz)


def _priced(
    model: Model,
    operation: Operation,
    options: RequestOptions,
    input_size: tuple[int, int] | None,
) -> ImageRequest | None:
    try:
        return build_request(model, operation, options, input_size=input_size)
    except CatalogError:
        return None


def _offer(
    kind: str,
    asked: ImageRequest,
    model: Model,
    options: RequestOptions,
    what: str,
    input_size: tuple[int, int] | None,
    price: Pricer | None,
) -> Offer | None:
    priced = _priced(model, asked.operation, options, input_size)
    if priced is None:
        return None
    buzz = price(model, options) if price is not None else priced.buzz
    if buzz is None:
        return None
    return Offer(kind, model, _without_sources(options), buzz, f"{what} · {buzz} Buzz")


def _without_sources(options: RequestOptions) -> RequestOptions:
    return options.with_sources((), None)


def _qualities(
    asked: ImageRequest,
    options: RequestOptions,
    input_size: tuple[int, int] | None,
    price: Pricer | None,
) -> list[Offer]:
    current = getattr(asked.input, "quality", None)
    found = [
        _offer("quality", asked, asked.model, replace(options, quality=q), q, input_size, price)
        for q in QUALITIES.get(asked.model, ())
        if q != current
    ]
    return [o for o in found if o is not None]


def _sizes(
    asked: ImageRequest,
    options: RequestOptions,
    input_size: tuple[int, int] | None,
    price: Pricer | None,
) -> list[Offer]:
    """gpt-image-2's smaller tiers, the same way round as the request."""
    if asked.model is not Model.GPT_IMAGE_2:
        return []
    width = getattr(asked.input, "width", None) or (input_size or (0, 0))[0]
    height = getattr(asked.input, "height", None) or (input_size or (0, 0))[1]
    if not width or not height:
        return []
    found = []
    for tier in GPT2_TIERS:
        # Tier sides as valid gpt-image-2 sides (1080 → 1072: still that tier).
        long_side, short_side = (
            _side(max(tier.width, tier.height)),
            _side(min(tier.width, tier.height)),
        )
        w, h = (short_side, long_side) if height > width else (long_side, short_side)
        if (w, h) == (width, height) or tier.covers(width, height):
            continue
        size = f"{w}x{h}"
        varied = replace(options, size=size)
        offer = _offer("size", asked, asked.model, varied, size, input_size, price)
        if offer is not None:
            found.append(offer)
    return found


def _side(value: int) -> int:
    return value - value % GPT2_MULTIPLE


def _quantities(
    asked: ImageRequest,
    options: RequestOptions,
    input_size: tuple[int, int] | None,
    price: Pricer | None,
) -> list[Offer]:
    found = []
    for n in range(asked.quantity - 1, 0, -1):
        what = f"{n} image{'s' if n != 1 else ''}"
        varied = replace(options, quantity=n)
        offer = _offer("quantity", asked, asked.model, varied, what, input_size, price)
        if offer is not None:
            found.append(offer)
    return found


def _models(
    asked: ImageRequest,
    options: RequestOptions,
    enabled: Callable[[str], bool],
    price: Pricer | None,
) -> list[Offer]:
    """Other models that are on, each at its qualities, keeping what carries over."""
    if asked.operation is not Operation.CREATE:
        return []  # an edit's sources are prepared for its own model
    found = []
    for model in PREFERENCE:
        can = capability(model, Operation.CREATE)
        if model is asked.model or can is None or not enabled(model.value):
            continue
        quantity = min(asked.quantity, can.max_quantity) if can.max_quantity > 1 else None
        base = RequestOptions(
            prompt=options.prompt,
            quantity=quantity,
            format=options.format,
            background=options.background if can.takes("background") else None,
            style=options.style if can.takes("style") else None,
        )
        for quality in QUALITIES.get(model, (None,)):
            what = f"{model.value} {quality}" if quality else model.value
            varied = replace(base, quality=quality)
            offer = _offer("model", asked, model, varied, what, None, price)
            if offer is not None:
                found.append(offer)
    return found
