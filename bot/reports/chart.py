"""The spending chart: Buzz spent per UTC day as bars stacked by model, a legend with each
model's total, and the top spenders. Pure: a report in, PNG bytes out (Pillow only, no I/O, the
same bytes for the same report).

Each model keeps its colour from one report to the next (the catalog's models have fixed ones),
so an admin comparing two charts reads the colours the same way.
"""

from __future__ import annotations

import io
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from PIL import Image, ImageDraw, ImageFont

from bot.catalog.names import MODEL_NAMES
from bot.store.reports import Spending

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

WIDTH, HEIGHT = 1000, 560
BACKGROUND: RGB = (255, 255, 255)
TEXT: RGB = (33, 33, 33)
MUTED: RGB = (110, 110, 110)
GRID: RGB = (233, 233, 233)
AXIS: RGB = (140, 140, 140)
# Saturated colours, none of them grey: text and grid lines are grey, so a pixel of one of
# these belongs to a bar or a legend swatch.
MODEL_COLOURS: dict[str, RGB] = dict(
    zip(
        MODEL_NAMES,
        [
            (66, 133, 244),
            (234, 67, 53),
            (251, 188, 5),
            (52, 168, 83),
            (171, 71, 188),
            (233, 30, 99),
        ],
        strict=True,
    )
)
OTHER_COLOURS: tuple[RGB, ...] = ((0, 172, 193), (255, 112, 67), (141, 110, 99), (124, 179, 66))


def colours(models: Sequence[str]) -> dict[str, RGB]:
    """The catalog's models keep their colours; any other model gets the next spare one."""
    spare = sorted(m for m in models if m not in MODEL_COLOURS)
    found = {m: MODEL_COLOURS[m] for m in models if m in MODEL_COLOURS}
    for n, model in enumerate(spare):
        found[model] = OTHER_COLOURS[n % len(OTHER_COLOURS)]
    return found


@dataclass(frozen=True)
class Layout:
    """Where the plot and the side panel sit; bar i of `days` occupies bar_span(i)."""

    days: int
    left: int = 84
    top: int = 96
    right: int = WIDTH - 290
    bottom: int = HEIGHT - 56
    panel: int = WIDTH - 268

    @property
    def slot(self) -> float:
        return (self.right - self.left) / self.days

    def bar_span(self, index: int) -> tuple[int, int]:
        """First and last pixel column of the bar of day `index` (0 = oldest)."""
        width = max(1, min(64, int(self.slot * 0.7)))
        start = self.left + int(index * self.slot + (self.slot - width) / 2)
        return start, start + width - 1

    def height_of(self, amount: int, scale_max: int) -> int:
        """Pixels for an amount; anything above zero shows at least one pixel."""
        if amount <= 0:
            return 0
        return max(1, round(amount * (self.bottom - self.top) / scale_max))


def nice_step(largest: int, ticks: int = 5) -> int:
    """A round grid step (1, 2 or 5 times a power of ten) giving about `ticks` lines."""
    raw = max(1.0, largest / ticks)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def render(spending: Spending, names: Mapping[int, str]) -> bytes:
    """The chart as PNG bytes; `names` labels the top spenders (their id when missing)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    fonts = _Fonts()
    layout = Layout(len(spending.days))
    models = spending.models
    palette = colours(models)
    totals = [spending.day_total(d) for d in spending.days]
    step = nice_step(max(totals, default=0))
    scale_max = step * max(1, math.ceil(max(totals, default=0) / step))

    first, last = spending.days[0], spending.days[-1]
    if first == last:
        title, span = "Buzz spent today (UTC)", f"{_day(last)} {last.year}"
    else:
        title = f"Buzz spent per day · last {len(spending.days)} days (UTC)"
        span = f"{_day(first)} to {_day(last)} {last.year}"
    draw.text((16, 14), title, TEXT, fonts.big)
    draw.text(
        (16, 42),
        f"Total {spending.total:,} Buzz charged, net of refunds · {span}",
        MUTED,
        fonts.normal,
    )

    _grid(draw, layout, step, scale_max, fonts.small)
    for index, day in enumerate(spending.days):
        x0, x1 = layout.bar_span(index)
        below = layout.bottom
        running = 0
        for model in models:
            amount = spending.by_day.get((day, model), 0)
            if not amount:
                continue
            running += amount
            top = layout.bottom - layout.height_of(running, scale_max)
            if top < below:
                draw.rectangle((x0, top, x1, below - 1), fill=palette[model])
                below = top
        if totals[index] and layout.slot >= 36:  # room for the day's total above its bar
            label = f"{totals[index]:,}"
            width = draw.textlength(label, font=fonts.small)
            draw.text(((x0 + x1 + 1 - width) / 2, below - 16), label, MUTED, fonts.small)
    draw.line((layout.left, layout.bottom, layout.right, layout.bottom), AXIS, 1)
    _day_labels(draw, layout, spending, fonts.small)
    y = _legend(draw, layout, spending, palette, fonts)
    _leaders(draw, layout, spending, names, fonts, y + 36)

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# Pillow's built-in font has ASCII glyphs only: the usual Latin letters lose their accents, and
# a name with nothing left to show is replaced by the member's id (the message names them all).
SPELLED_OUT = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d"}


class _Fonts:
    def __init__(self) -> None:
        self.big: Font = ImageFont.load_default(size=20)
        self.normal: Font = ImageFont.load_default(size=15)
        self.small: Font = ImageFont.load_default(size=12)


def printable(text: str) -> str:
    """The text with what the font cannot draw spelt in ASCII or left out; "" if nothing
    readable is left."""
    out = []
    for char in text:
        if " " <= char <= "~":
            out.append(char)
        elif char in SPELLED_OUT:
            out.append(SPELLED_OUT[char])
        else:
            base = unicodedata.normalize("NFKD", char)
            out.append("".join(c for c in base if " " <= c <= "~"))
    shown = " ".join("".join(out).split())
    return shown if any(c.isalnum() for c in shown) else ""


def _day(day: date) -> str:
    return f"{day.day} {day:%b}"


def _grid(draw: ImageDraw.ImageDraw, layout: Layout, step: int, scale_max: int, font: Font) -> None:
    for value in range(0, scale_max + 1, step):
        y = layout.bottom - layout.height_of(value, scale_max)
        if value:
            draw.line((layout.left, y, layout.right, y), GRID, 1)
        label = f"{value:,}"
        width = draw.textlength(label, font=font)
        draw.text((layout.left - 8 - width, y - 8), label, MUTED, font)
    draw.text((16, layout.top - 24), "Buzz", MUTED, font)


def _day_labels(draw: ImageDraw.ImageDraw, layout: Layout, spending: Spending, font: Font) -> None:
    """A label under every k-th day, counted back from today so that today has one."""
    every = max(1, math.ceil(58 / layout.slot))
    count = len(spending.days)
    for index in range(count - 1, -1, -every):
        x0, x1 = layout.bar_span(index)
        centre = (x0 + x1 + 1) / 2
        draw.line((centre, layout.bottom + 1, centre, layout.bottom + 4), AXIS, 1)
        label = _day(spending.days[index])
        width = draw.textlength(label, font=font)
        draw.text((centre - width / 2, layout.bottom + 8), label, MUTED, font)


def _legend(
    draw: ImageDraw.ImageDraw,
    layout: Layout,
    spending: Spending,
    palette: Mapping[str, RGB],
    fonts: _Fonts,
) -> int:
    """One row per model, biggest first (the bottom of each stack); returns the y below it."""
    x, y = layout.panel, layout.top - 8
    draw.text((x, y), "By model", TEXT, fonts.normal)
    totals = spending.model_totals()
    for model in spending.models:
        y += 24
        draw.rectangle((x, y + 2, x + 13, y + 15), fill=palette[model])
        draw.text((x + 22, y), model, TEXT, fonts.normal)
        _right(draw, f"{totals[model]:,}", y, fonts.normal)
    return y


def _leaders(
    draw: ImageDraw.ImageDraw,
    layout: Layout,
    spending: Spending,
    names: Mapping[int, str],
    fonts: _Fonts,
    y: int,
) -> None:
    x = layout.panel
    draw.text((x, y), "Top spenders", TEXT, fonts.normal)
    for rank, spender in enumerate(spending.top, start=1):
        y += 24
        amount = f"{spender.amount:,}"
        room = WIDTH - 16 - x - draw.textlength(amount, font=fonts.normal) - 12
        name = printable(names.get(spender.member_id, "")) or f"member {spender.member_id}"
        label = _fit(draw, f"{rank}. {name}", room, fonts)
        draw.text((x, y), label, TEXT, fonts.normal)
        _right(draw, amount, y, fonts.normal)


def _right(draw: ImageDraw.ImageDraw, text: str, y: int, font: Font) -> None:
    draw.text((WIDTH - 16 - draw.textlength(text, font=font), y), text, TEXT, font)


def _fit(draw: ImageDraw.ImageDraw, text: str, room: float, fonts: _Fonts) -> str:
    """The text, shortened with an ellipsis until it fits in `room` pixels."""
    if draw.textlength(text, font=fonts.normal) <= room:
        return text
    while text and draw.textlength(text + "…", font=fonts.normal) > room:
        text = text[:-1]
    return text + "…"
