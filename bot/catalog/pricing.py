"""Buzz prices, exactly as DESIGN.md "Buzz pricing" states them. Integers only.

gpt-image-2 is size-aware: the tier is the FIRST row, in table order, that covers the request
either way round; anything larger than every row bills at the last row. The guide's word
"cheapest" cannot be literal (1024x1024 would bill at the 1920x1080 row); first-covering matches
all three worked examples.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog.names import Model


@dataclass(frozen=True)
class Gpt2Tier:
    width: int
    height: int
    low: int
    medium: int
    high: int

    def covers(self, w: int, h: int) -> bool:
        return (w <= self.width and h <= self.height) or (w <= self.height and h <= self.width)

    def price(self, quality: str) -> int:
        return int(getattr(self, quality))

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"


GPT2_TIERS: tuple[Gpt2Tier, ...] = (
    Gpt2Tier(1024, 768, 13, 52, 195),
    Gpt2Tier(1024, 1024, 13, 78, 286),
    Gpt2Tier(1024, 1536, 13, 65, 221),
    Gpt2Tier(1920, 1080, 13, 52, 208),
    Gpt2Tier(2560, 1440, 13, 78, 299),
    Gpt2Tier(3840, 2160, 26, 143, 533),
)

FLAT_PRICES: dict[Model, dict[str, int]] = {
    Model.GPT_IMAGE_1_5: {"low": 25, "medium": 100, "high": 375},
    Model.GPT_IMAGE_1: {"low": 25, "medium": 100, "high": 375, "auto": 300},
}
DALL_E_PRICE = 300


def gpt2_tier(width: int, height: int) -> Gpt2Tier:
    """The first tier in table order that covers width x height (rotation-aware), else the last."""
    for tier in GPT2_TIERS:
        if tier.covers(width, height):
            return tier
    return GPT2_TIERS[-1]


def unit_price(model: Model, quality: str | None, width: int | None, height: int | None) -> int:
    """Buzz for one image. gpt-image-2 needs the output (or first source) dimensions."""
    if model is Model.GPT_IMAGE_2:
        if width is None or height is None:
            raise ValueError("gpt-image-2 is priced by size: width and height are needed")
        return gpt2_tier(width, height).price(quality or "high")
    if model in FLAT_PRICES:
        table = FLAT_PRICES[model]
        return table[quality or ("auto" if "auto" in table else "high")]
    if model in (Model.DALL_E_3, Model.DALL_E_2):
        return DALL_E_PRICE
    raise KeyError(f"{model.value} has no price on the Civitai lane")


def total_price(
    model: Model, quality: str | None, quantity: int, width: int | None, height: int | None
) -> int:
    if quantity < 1:
        raise ValueError("quantity must be at least 1")
    return unit_price(model, quality, width, height) * quantity
