"""The OpenAI lane's Buzz prices: the Civitai table for the models both lanes share, overridable.

The ledger's unit is Buzz on both lanes. The defaults come from bot/catalog/pricing.py (DESIGN.md
"Buzz pricing"), so a model costs the same on either lane unless an operator says otherwise.
gpt-image-1-mini has no Civitai price, so it has none by default: a model without a price is
disabled until an admin sets one.

Overrides map a model name to either an integer (Buzz per image, whatever the options) or a
mapping of quality to Buzz per image; None removes a model's price (disabling it). An override
replaces the model's default entirely, including gpt-image-2's size tiers.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bot.catalog.names import Model
from bot.catalog.pricing import unit_price as civitai_unit_price
from bot.openai_api.catalog import MODEL_NAMES, model_spec

PriceOverride = int | Mapping[str, int] | None
# The models whose default is the Civitai lane's price (bot/catalog/names.Model).
SHARED = frozenset(m.value for m in Model)


class PriceTable:
    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None) -> None:
        self._overrides: dict[str, int | Mapping[str, int] | None] = {}
        for name, value in (overrides or {}).items():
            spec = model_spec(name)
            if spec is None:
                raise ValueError(f"price for unknown model {name!r}: one of {MODEL_NAMES}")
            self._overrides[spec.name] = _checked(spec.name, value)

    def __repr__(self) -> str:
        return f"PriceTable(overrides={self._overrides!r})"

    def unit_price(
        self, model: str, quality: str | None, width: int | None, height: int | None
    ) -> int | None:
        """Buzz for one image, or None when the model (or this quality) has no price."""
        spec = model_spec(model)
        if spec is None:
            return None
        if spec.name in self._overrides:
            value = self._overrides[spec.name]
            if value is None or isinstance(value, int):
                return value
            return value.get(quality or "")
        if spec.name not in SHARED:
            return None
        if spec.name == Model.GPT_IMAGE_2 and (width is None or height is None):
            return None
        try:
            return civitai_unit_price(Model(spec.name), quality, width, height)
        except (KeyError, AttributeError):  # a quality the Civitai table has no price for
            return None

    def price(
        self, model: str, quality: str | None, n: int, width: int | None, height: int | None
    ) -> int | None:
        """Buzz for a request: the per-image price times n (None: no price)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        unit = self.unit_price(model, quality, width, height)
        return None if unit is None else unit * n

    def priced_qualities(self, model: str) -> tuple[str, ...] | None:
        """The qualities with a price; None when every quality costs the same (flat)."""
        spec = model_spec(model)
        if spec is None:
            return ()
        probe = (1024, 1024) if spec.name == Model.GPT_IMAGE_2 else (None, None)
        if not spec.qualities:
            return None
        priced = tuple(
            q for q in spec.qualities if self.unit_price(spec.name, q, *probe) is not None
        )
        return None if len(priced) == len(spec.qualities) else priced

    def is_priced(self, model: str) -> bool:
        spec = model_spec(model)
        if spec is None:
            return False
        probe = (1024, 1024) if spec.name == Model.GPT_IMAGE_2 else (None, None)
        qualities = spec.qualities or (None,)
        return any(self.unit_price(spec.name, q, *probe) is not None for q in qualities)

    def priced_models(self) -> frozenset[str]:
        return frozenset(name for name in MODEL_NAMES if self.is_priced(name))


def _checked(model: str, value: object) -> int | Mapping[str, int] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        spec = model_spec(model)
        allowed = spec.qualities if spec else ()
        table: dict[str, int] = {}
        for quality, price in value.items():
            if quality not in allowed:
                raise ValueError(f"{model} has no quality {quality!r}: one of {allowed}")
            table[str(quality)] = _buzz(model, price)
        return MappingProxyType(table)
    return _buzz(model, value)


def _buzz(model: str, value: object) -> int:
    # Money is integer Buzz: no floats, no bools, nothing negative.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"the price of {model} must be a whole number of Buzz, got {value!r}")
    return value
