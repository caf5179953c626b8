"""Parsing WIDTHxHEIGHT, the gpt-image-2 size rules, presets and nearest valid sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.catalog.inputs import GPT2_MAX_SIDE, GPT2_MIN_SIDE, GPT2_MULTIPLE

_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[x×*]\s*(\d{1,5})\s*$", re.IGNORECASE)

# seeds/003: upstream limits for gpt-image-2. Warnings only: the orchestrator's limits are hard.
UPSTREAM_MIN_PIXELS = 655_360
UPSTREAM_MAX_PIXELS = 8_294_400
UPSTREAM_MAX_ASPECT = 3.0


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


# 1080 is not a multiple of 16: the 1080p presets use 1072, which stays in the 1920x1080 tier.
GPT2_PRESETS: tuple[Preset, ...] = (
    Preset("square", 1024, 1024),
    Preset("portrait", 1024, 1536),
    Preset("landscape", 1536, 1024),
    Preset("1080p", 1920, 1072),
    Preset("1080p portrait", 1072, 1920),
    Preset("1440p", 2560, 1440),
    Preset("1440p portrait", 1440, 2560),
    Preset("4K", 3840, 2160),
    Preset("4K portrait", 2160, 3840),
)


def parse_size(text: str) -> tuple[int, int] | None:
    """'1920x1072' (also 1920×1072, 1920*1072, spaces) → (1920, 1072); None if not that shape."""
    m = _SIZE_RE.match(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


def format_size(width: int, height: int) -> str:
    return f"{width}x{height}"


def gpt2_side_ok(value: int) -> bool:
    return GPT2_MIN_SIDE <= value <= GPT2_MAX_SIDE and value % GPT2_MULTIPLE == 0


def _candidates(value: int) -> list[int]:
    low = max(GPT2_MIN_SIDE, min(GPT2_MAX_SIDE, value - value % GPT2_MULTIPLE))
    high = max(GPT2_MIN_SIDE, min(GPT2_MAX_SIDE, low + (GPT2_MULTIPLE if value > low else 0)))
    return sorted({low, high})


def nearest_gpt2_sizes(width: int, height: int, limit: int = 4) -> list[tuple[int, int]]:
    """Valid gpt-image-2 sizes closest to width x height, the closest (then smallest) first."""
    options = {(w, h) for w in _candidates(width) for h in _candidates(height)}
    return sorted(options, key=lambda s: (abs(s[0] - width) + abs(s[1] - height), s[0] * s[1]))[
        :limit
    ]


def gpt2_upstream_warnings(width: int, height: int) -> list[str]:
    warnings = []
    pixels = width * height
    if pixels < UPSTREAM_MIN_PIXELS:
        warnings.append(
            f"{width}x{height} is {pixels:,} pixels; OpenAI documents at least "
            f"{UPSTREAM_MIN_PIXELS:,} for gpt-image-2, so the request may be refused upstream"
        )
    if pixels > UPSTREAM_MAX_PIXELS:
        warnings.append(
            f"{width}x{height} is {pixels:,} pixels; OpenAI documents at most "
            f"{UPSTREAM_MAX_PIXELS:,} for gpt-image-2, so the request may be refused upstream"
        )
    if max(width, height) > UPSTREAM_MAX_ASPECT * min(width, height):
        warnings.append(
            f"{width}x{height} is wider than 3:1; OpenAI documents an aspect ratio of at most "
            "3:1 for gpt-image-2, so the request may be refused upstream"
        )
    return warnings
