"""The spending chart as an admin sees it: a real PNG, decoded, whose bars are measured by
scanning pixel columns for the models' colours."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, date, datetime
from itertools import pairwise

from PIL import Image

from bot.reports.chart import HEIGHT, MODEL_COLOURS, WIDTH, Layout, colours, printable, render
from bot.store.reports import Spender, Spending, window

DAYS = window(10, datetime(2025, 1, 9, 12, tzinfo=UTC))  # 31 Dec .. 9 Jan
BLUE = MODEL_COLOURS["gpt-image-2"]
GREEN = MODEL_COLOURS["dall-e-3"]


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        img.load()
        return img.convert("RGB")


def column(img: Image.Image, layout: Layout, index: int) -> dict[tuple[int, int, int], list[int]]:
    """The rows of each colour in the middle column of day `index`'s bar, inside the plot."""
    x0, x1 = layout.bar_span(index)
    x = (x0 + x1) // 2
    found: dict[tuple[int, int, int], list[int]] = {}
    for y in range(layout.top - 40, layout.bottom + 1):
        found.setdefault(img.getpixel((x, y)), []).append(y)
    return found


def colour_counts(img: Image.Image) -> Counter[tuple[int, int, int]]:
    return Counter({colour: n for n, colour in img.getcolors(img.width * img.height) or []})


def spending() -> Spending:
    return Spending(
        days=DAYS,
        by_day={
            (DAYS[0], "gpt-image-2"): 300,
            (DAYS[3], "gpt-image-2"): 600,
            (DAYS[3], "dall-e-3"): 900,
            (DAYS[9], "dall-e-3"): 150,
        },
        top=(Spender(11, 1200), Spender(12, 750)),
    )


def test_bars_stack_by_model_and_the_busiest_day_is_tallest() -> None:
    data = render(spending(), {11: "alice", 12: "bob"})
    img = decode(data)
    assert img.size == (WIDTH, HEIGHT)
    layout = Layout(len(DAYS))

    heights = {}
    for index in range(len(DAYS)):
        rows = column(img, layout, index)
        blue, green = rows.get(BLUE, []), rows.get(GREEN, [])
        heights[index] = (len(blue), len(green))
        if blue or green:  # every bar stands on the axis
            assert max(blue + green) == layout.bottom - 1
    # Days 0, 3 and 9 have bars; every other day has none.
    assert {i for i, (b, g) in heights.items() if b or g} == {0, 3, 9}
    assert heights[5] == (0, 0)
    tallest = max(heights, key=lambda i: sum(heights[i]))
    assert tallest == 3
    # Heights follow the amounts (one scale for the whole chart, to a pixel of rounding).
    per_buzz = sum(heights[3]) / 1500
    assert abs(heights[0][0] - 300 * per_buzz) <= 1
    assert abs(heights[3][0] - 600 * per_buzz) <= 1
    assert abs(heights[9][1] - 150 * per_buzz) <= 1
    assert heights[0][1] == heights[9][0] == 0
    # dall-e-3 spent more in all (1,050 against 900): its part is the bottom of the stack.
    rows = column(img, layout, 3)
    assert max(rows[BLUE]) < min(rows[GREEN])


def test_the_legend_shows_each_models_colour_and_no_other() -> None:
    img = decode(render(spending(), {}))
    layout = Layout(len(DAYS))
    panel = colour_counts(img.crop((layout.panel, 0, WIDTH, HEIGHT)))
    swatch = 14 * 14
    assert panel[BLUE] == swatch and panel[GREEN] == swatch
    everywhere = colour_counts(img)
    for model, colour in MODEL_COLOURS.items():
        if model not in ("gpt-image-2", "dall-e-3"):
            assert everywhere[colour] == 0, model


def test_the_same_report_gives_the_same_png() -> None:
    names = {11: "alice", 12: "bob"}
    assert render(spending(), names) == render(spending(), names)


def test_ninety_days_of_bars_stay_apart_and_all_show() -> None:
    days = window(90, datetime(2025, 3, 31, tzinfo=UTC))
    report = Spending(
        days=days,
        by_day={(d, "gpt-image-1"): 100 + n for n, d in enumerate(days)},
        top=(Spender(1, 99_999),),
    )
    img = decode(render(report, {1: "a"}))
    layout = Layout(90)
    yellow = MODEL_COLOURS["gpt-image-1"]
    spans = [layout.bar_span(i) for i in range(90)]
    assert all(a[1] < b[0] for a, b in pairwise(spans))
    heights = [len(column(img, layout, i).get(yellow, [])) for i in range(90)]
    assert all(h > 0 for h in heights)
    assert heights[-1] == max(heights) and heights[0] == min(heights)
    assert spans[-1][1] <= layout.right


def test_other_models_get_spare_colours_that_stay_with_them() -> None:
    first = colours(["gpt-image-2", "zeta", "alpha"])
    assert first["gpt-image-2"] == BLUE
    assert first["alpha"] != first["zeta"]
    assert set(first.values()).isdisjoint(set(MODEL_COLOURS.values()) - {BLUE})
    assert colours(["zeta", "alpha"]) == {"alpha": first["alpha"], "zeta": first["zeta"]}


def test_names_the_built_in_font_cannot_draw() -> None:
    assert printable("Zoë Straße") == "Zoe Strasse"
    assert printable("Łukasz 🎨") == "Lukasz"
    assert printable("中文") == ""
    assert printable("  plain   name ") == "plain name"


def test_a_one_day_report_has_one_bar() -> None:
    today = (date(2025, 1, 9),)
    report = Spending(today, {(today[0], "dall-e-2"): 13}, (Spender(5, 13),))
    img = decode(render(report, {5: "eve"}))
    rows = column(img, Layout(1), 0)
    assert len(rows.get(MODEL_COLOURS["dall-e-2"], [])) > 0
