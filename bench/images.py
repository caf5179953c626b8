"""Photo-like test images for the benchmarks (Pillow only, reproducible from a seed).

A flat colour or a few shapes compresses to almost nothing, so it says little about what
decoding, re-encoding and uploading real photos costs. These images have what makes photos
expensive: smooth low-frequency colour fields, mid-frequency detail and per-pixel sensor grain,
so a PNG of them stays large (about 1.5 bytes per pixel at the default grain) and a JPEG of
them is the size a camera or a model would produce.
"""

from __future__ import annotations

import io
import math
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter

# (width, height, format) per --source-size of bench/admission.py. The byte sizes are what
# these settings give (printed by the benchmark): ~1 MB and ~4 MB PNGs, and a 3840x2160 JPEG
# (a 4K PNG photo is ~18 MB, over Discord's 10 MB free upload limit; members send JPEGs).
SOURCE_SIZES: dict[str, tuple[int, int, str]] = {
    "1mb": (720, 704, "PNG"),
    "4mb": (1600, 1248, "PNG"),
    "4k": (3840, 2160, "JPEG"),
}


def _noise(rng: random.Random, width: int, height: int, mode: str = "L") -> Image.Image:
    bands = len(mode)
    return Image.frombytes(mode, (width, height), rng.randbytes(width * height * bands))


def photo(width: int, height: int, *, seed: int = 0, grain: int = 12) -> Image.Image:
    """An RGB image with a photo's spectrum: colour fields, detail and grain of ±`grain`."""
    rng = random.Random(seed)
    # Low frequency: a few dozen colour cells, upsampled smoothly (sky, walls, skin).
    coarse = _noise(rng, max(2, width // 160), max(2, height // 160), "RGB")
    base = coarse.resize((width, height), Image.Resampling.BICUBIC)
    # Mid frequency: texture at ~16 px, weaker (foliage, fabric).
    mid = _noise(rng, max(2, width // 16), max(2, height // 16), "RGB")
    mid = mid.resize((width, height), Image.Resampling.BICUBIC).point(
        lambda v: 128 + (v - 128) * 40 // 128
    )
    image = ImageChops.add(base, mid, scale=1.0, offset=-128)
    # A few soft-edged shapes: edges are where JPEG and resizing spend their bits.
    shapes = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(shapes)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(4, min(width, height) // 12), max(8, min(width, height) // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.randrange(60, 200))
    shapes = shapes.filter(ImageFilter.GaussianBlur(2))
    tint = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    image = Image.composite(tint, image, shapes)
    if grain:
        # Sensor grain: uniform ±grain per channel and pixel (does not compress away).
        noise = _noise(rng, width, height, "RGB").point(
            lambda v: 128 - grain + (v * (2 * grain + 1)) // 256
        )
        image = ImageChops.add(image, noise, scale=1.0, offset=-128)
    return image


def cutout(width: int, height: int, *, seed: int = 0, grain: int = 12) -> Image.Image:
    """An RGBA photo with a soft-edged transparent surround (a subject with the background
    removed, as gpt-image-1.5 makes with background=transparent)."""
    image = photo(width, height, seed=seed, grain=grain).convert("RGBA")
    alpha = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(alpha)
    cx, cy = width / 2, height / 2
    points = []
    rng = random.Random(seed + 1)
    for i in range(64):
        angle = 2 * math.pi * i / 64
        radius = 0.38 * min(width, height) * (1 + 0.25 * rng.uniform(-1, 1))
        points.append((cx + radius * 1.4 * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=255)
    image.putalpha(alpha.filter(ImageFilter.GaussianBlur(max(2, min(width, height) // 200))))
    return image


def encode(image: Image.Image, fmt: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        options.setdefault("quality", 92)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def source_file(size: str, *, seed: int = 0, fmt: str | None = None) -> tuple[str, bytes, str]:
    """(filename, bytes, content type) of an edit source for `size` (see SOURCE_SIZES)."""
    width, height, default_fmt = SOURCE_SIZES[size]
    fmt = fmt or default_fmt
    data = encode(photo(width, height, seed=seed), fmt)
    extension, mime = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg")}[fmt]
    return f"photo-{size}.{extension}", data, mime


def psnr(original: Image.Image, other: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB over all channels (inf when identical). Above ~40 dB
    differences are not visible; 30–40 dB is good lossy compression."""
    if original.size != other.size or original.mode != other.mode:
        raise ValueError("compare images of the same size and mode")
    histogram = ImageChops.difference(original, other).histogram()
    bands = len(original.getbands())
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (original.width * original.height * bands)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
