"""Fitting a 4K result under Discord's 10 MiB upload limit: time, bytes and what is lost.

    python bench/fit.py [--runs 5] [--limit-mib 10] [--grain 6]

Times bot.media.fit_for_upload (what the publisher runs on a thread for every result) on two
3840x2160 photo-like PNGs as a model returns them: one opaque (~14 MB) and one with a
transparent, soft-edged surround (~17 MB). Both are over the limit, so both are re-encoded.
--grain is the per-pixel noise (±levels) on top of the image's structure: lossy encoders drop
grain first, so more grain means a lower PSNR for the same visible result.
Prints the median wall and CPU time over --runs, next to the targets (< 200 ms opaque,
< 400 ms with transparency), the output's format, size and bytes, and its PSNR against the
original (colour composited on mid-grey, so pixels nobody can see do not count; alpha apart):
above ~40 dB a difference is not visible, 30–40 dB is ordinary lossy compression. An output
scaled down is compared with the original scaled the same way, and the report says so.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import row, verdict  # noqa: E402
from bench.images import cutout, encode, photo, psnr  # noqa: E402
from bot.media.fit import fit_for_upload  # noqa: E402

WIDTH, HEIGHT = 3840, 2160
GREY = (128, 128, 128, 255)


def on_grey(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image.convert("RGB")
    ground = Image.new("RGBA", image.size, GREY)
    return Image.alpha_composite(ground, image).convert("RGB")


def measure(name: str, original: Image.Image, limit: int, runs: int, target_ms: float) -> None:
    data = encode(original, "PNG")
    walls, cpus = [], []
    fitted = None
    for _ in range(runs):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        fitted = fit_for_upload(data, limit)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    assert fitted is not None
    with Image.open(io.BytesIO(fitted.data)) as opened:
        opened.load()
        out = opened.convert("RGBA" if original.mode == "RGBA" else "RGB")
    reference = original
    scaled = out.size != original.size
    if scaled:
        reference = original.resize(out.size, Image.Resampling.LANCZOS)
    colour = psnr(on_grey(reference), on_grey(out))
    wall = statistics.median(walls) * 1000
    print(f"\n{name}: {WIDTH}x{HEIGHT} PNG of {len(data) / 1e6:.1f} MB, limit {limit:,} bytes")
    print(row("fit_for_upload, median wall (ms)", f"{wall:.0f}", f"< {target_ms:g}"), end="")
    print(f" {verdict(wall, f'< {target_ms}')}")
    print(row("  median CPU (ms)", f"{statistics.median(cpus) * 1000:.0f}"))
    print(row("  min–max wall (ms)", f"{min(walls) * 1000:.0f}–{max(walls) * 1000:.0f}"))
    print(row("output", f"{fitted.mime} {fitted.width}x{fitted.height}"))
    print(row("output bytes", f"{len(fitted.data):,}", f"<= {limit:,}"))
    label = "PSNR, colour on grey (dB)" + (" vs the original scaled alike" if scaled else "")
    print(row(label, f"{colour:.1f}", "> 40 = not visible"))
    if original.mode == "RGBA":
        alpha = psnr(reference.getchannel("A"), out.getchannel("A"))
        print(row("PSNR, alpha (dB)", f"{alpha:.1f}"))
    print(row("note shown to the member", str(fitted.note)[:60]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit-mib", type=float, default=10.0)
    parser.add_argument("--grain", type=int, default=6, help="sensor grain, ± levels")
    parser.epilog = __doc__
    args = parser.parse_args()
    limit = int(args.limit_mib * 1024 * 1024)
    print(f"fit benchmark: medians of {args.runs} runs, grain ±{args.grain}")
    opaque = photo(WIDTH, HEIGHT, seed=11, grain=args.grain)
    measure("opaque", opaque, limit, args.runs, 200)
    transparent = cutout(WIDTH, HEIGHT, seed=12, grain=args.grain)
    measure("with transparency", transparent, limit, args.runs, 400)


if __name__ == "__main__":
    main()
