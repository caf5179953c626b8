"""The OpenAI lane's models and what each takes, from the OpenAI documents (seeds 001-004).

Pure data and arithmetic, no I/O. The Civitai lane's catalog (bot/catalog) describes what the
orchestrator accepts; this one describes the Images API itself, which differs: every GPT image
model takes a mask and makes up to 10 images a request, gpt-image-2 takes any `WIDTHxHEIGHT` within
seed 003's limits (hard here: nothing stands between us and OpenAI), dall-e models answer PNG
only and never stream, and gpt-image-1-mini exists.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from bot.catalog.names import Operation

CREATE_EDIT = frozenset({Operation.CREATE, Operation.EDIT})

# seed 003: gpt-image-2 takes any size whose sides are multiples of 16, with the longest edge at
# most 3840, an aspect ratio at most 3:1, and 655 360 to 8 294 400 pixels in total.
GPT2_MULTIPLE = 16
GPT2_MAX_EDGE = 3840
GPT2_MAX_ASPECT = 3
GPT2_MIN_PIXELS = 655_360
GPT2_MAX_PIXELS = 8_294_400

GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536")
GPT_QUALITIES = ("low", "medium", "high", "auto")
GPT_FORMATS = ("jpeg", "png", "webp")
# The GPT image models take up to 16 edit images (the Images API reference); dall-e-2 one.
GPT_MAX_EDIT_IMAGES = 16


@dataclass(frozen=True)
class ModelSpec:
    """One model as the Images API knows it. Empty tuples mean "the model has no such option"."""

    name: str
    operations: frozenset[Operation]
    prompt_max: int
    n_max: int
    # None: any WIDTHxHEIGHT that passes gpt2_size_problems (gpt-image-2).
    sizes: tuple[str, ...] | None
    default_size: str
    qualities: tuple[str, ...]
    default_quality: str | None
    backgrounds: tuple[str, ...]
    formats: tuple[str, ...]
    styles: tuple[str, ...] = ()
    default_style: str | None = None
    fidelities: tuple[str, ...] = ()
    mask: bool = False
    max_edit_images: int = 0
    # The GPT image family: streams partial images, reports usage, takes moderation and
    # output_compression, and always returns base64. dall-e models answer a plain JSON body
    # and need `response_format: b64_json` to return the bytes rather than a URL.
    gpt: bool = True

    @property
    def streams(self) -> bool:
        return self.gpt

    @property
    def image_field(self) -> str:
        """The multipart name of each edit source: `image[]` (one part per source) or `image`."""
        return "image[]" if self.gpt else "image"

    @property
    def result_format(self) -> str | None:
        """The only format a model answers in when it takes no output_format (dall-e: png)."""
        return None if self.formats else "png"


def _gpt(name: str, *, default_quality: str, fidelities: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(
        name=name,
        operations=CREATE_EDIT,
        prompt_max=32_000,
        n_max=10,
        sizes=("auto", *GPT_SIZES),
        default_size="1024x1024",
        qualities=GPT_QUALITIES,
        default_quality=default_quality,
        backgrounds=("auto", "transparent", "opaque"),
        formats=GPT_FORMATS,
        fidelities=fidelities,
        mask=True,
        max_edit_images=GPT_MAX_EDIT_IMAGES,
    )


# Default qualities match the Civitai lane's (high; gpt-image-1: auto), so a request left at its
# defaults costs the same Buzz on either lane.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gpt-image-2",
            operations=CREATE_EDIT,
            prompt_max=32_000,
            n_max=10,
            sizes=None,
            default_size="1024x1024",
            qualities=GPT_QUALITIES,
            default_quality="high",
            # seed 003: transparent is not supported by gpt-image-2.
            backgrounds=("auto", "opaque"),
            formats=GPT_FORMATS,
            mask=True,
            max_edit_images=GPT_MAX_EDIT_IMAGES,
        ),
        _gpt("gpt-image-1.5", default_quality="high", fidelities=("low", "high")),
        _gpt("gpt-image-1", default_quality="auto", fidelities=("low", "high")),
        _gpt("gpt-image-1-mini", default_quality="high", fidelities=("low", "high")),
        ModelSpec(
            name="dall-e-3",
            operations=frozenset({Operation.CREATE}),
            prompt_max=4_000,
            n_max=1,
            sizes=("1024x1024", "1792x1024", "1024x1792"),
            default_size="1024x1024",
            qualities=("standard", "hd", "auto"),
            default_quality="standard",
            backgrounds=(),
            formats=(),
            styles=("vivid", "natural"),
            default_style="vivid",
            gpt=False,
        ),
        ModelSpec(
            name="dall-e-2",
            operations=CREATE_EDIT,
            prompt_max=1_000,
            n_max=10,
            sizes=("256x256", "512x512", "1024x1024"),
            default_size="1024x1024",
            qualities=(),
            default_quality=None,
            backgrounds=(),
            formats=(),
            mask=True,
            max_edit_images=1,
            gpt=False,
        ),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
# Discord command names cannot contain dots: /create gpt-image-1-5 means gpt-image-1.5.
_ALIASES = {"gpt-image-1-5": "gpt-image-1.5"}


def model_spec(name: str) -> ModelSpec | None:
    key = name.strip().lower()
    return MODELS.get(_ALIASES.get(key, key))


# -- sizes ---------------------------------------------------------------------------------------


def parse_wxh(text: str) -> tuple[int, int] | None:
    width, sep, height = text.strip().lower().replace("×", "x").replace(" ", "").partition("x")
    digits = (width + height).isascii() and width.isdigit() and height.isdigit()
    if not sep or not digits or len(width + height) > 10:
        return None
    return int(width), int(height)


def gpt2_size_problems(width: int, height: int) -> list[str]:
    """Why width x height is not a gpt-image-2 size (seed 003), in plain words; [] if it is."""
    problems = []
    if width % GPT2_MULTIPLE or height % GPT2_MULTIPLE:
        problems.append("both sides must be multiples of 16")
    if max(width, height) > GPT2_MAX_EDGE:
        problems.append(f"the longest side may be at most {GPT2_MAX_EDGE}")
    if min(width, height) == 0 or max(width, height) > GPT2_MAX_ASPECT * min(width, height):
        problems.append("the aspect ratio may be at most 3:1")
    pixels = width * height
    if not GPT2_MIN_PIXELS <= pixels <= GPT2_MAX_PIXELS:
        problems.append(
            f"the total must be {GPT2_MIN_PIXELS:,} to {GPT2_MAX_PIXELS:,} pixels "
            f"({pixels:,} asked)"
        )
    return problems


def fit_gpt2_size(width: int, height: int) -> tuple[int, int]:
    """The valid gpt-image-2 size closest in shape and area to width x height.

    Used for an edit left without a size (the output follows the first source, so its size is
    known before the result arrives) and to suggest a size when a member's is refused.
    """
    width, height = max(1, width), max(1, height)
    ratio = min(max(width / height, 1 / GPT2_MAX_ASPECT), GPT2_MAX_ASPECT)
    pixels = min(max(width * height, GPT2_MIN_PIXELS), GPT2_MAX_PIXELS)
    w = math.sqrt(pixels * ratio)
    h = w / ratio
    scale = min(1.0, GPT2_MAX_EDGE / max(w, h))
    w, h = w * scale, h * scale
    best: tuple[float, int, int] | None = None
    # Try the multiples of 16 around the ideal sides; keep the valid one nearest in shape/area.
    for cw in _near16(w):
        for ch in _near16(h):
            if gpt2_size_problems(cw, ch):
                continue
            score = abs(math.log((cw / ch) / ratio)) + abs(math.log((cw * ch) / pixels))
            if best is None or score < best[0]:
                best = (score, cw, ch)
    if best is None:  # cannot happen for the limits above; a safe answer all the same
        return 1024, 1024
    return best[1], best[2]


def _near16(value: float) -> list[int]:
    base = int(value // GPT2_MULTIPLE) * GPT2_MULTIPLE
    return [c for c in range(base - 32, base + 49, GPT2_MULTIPLE) if 0 < c <= GPT2_MAX_EDGE]


def nearest_standard_size(width: int, height: int) -> str:
    """The GPT standard size whose shape is closest to width x height."""
    ratio = width / max(1, height)
    return min(GPT_SIZES, key=lambda s: abs(math.log(ratio / _ratio(s))))


def _ratio(size: str) -> float:
    parsed = parse_wxh(size)
    assert parsed is not None
    return parsed[0] / parsed[1]


# -- which models the lane offers ---------------------------------------------------------------


@dataclass(frozen=True)
class Availability:
    """Which models the bot may offer: served by the endpoint, known here, and priced."""

    enabled: tuple[str, ...]
    unpriced: tuple[str, ...]  # served and known, but with no Buzz price: disabled until set
    unknown: tuple[str, ...]  # named by the operator, but not a model this lane knows


def availability(served: Iterable[str] | None, priced: Collection[str]) -> Availability:
    """`served` is the operator's list (None: every model here); `priced` the models with a
    price (PriceTable.priced_models())."""
    names = list(MODEL_NAMES if served is None else dict.fromkeys(served))
    specs = {name: model_spec(name) for name in names}
    known = list(dict.fromkeys(spec.name for spec in specs.values() if spec is not None))
    return Availability(
        enabled=tuple(n for n in known if n in priced),
        unpriced=tuple(n for n in known if n not in priced),
        unknown=tuple(n for n, spec in specs.items() if spec is None),
    )
