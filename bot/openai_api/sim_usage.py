"""Token usage as the simulator reports it, from seed 004's "Cost and latency" table.

Output tokens by quality for the three standard sizes; other sizes scale the square's count by
their area. Each partial image adds 100 output tokens. Input: about 4 prompt characters a token,
and a fixed count per edit source image.
"""

from __future__ import annotations

from typing import Any

from bot.openai_api.sim_rules import SimJob

OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "1024x1024": {"low": 272, "medium": 1056, "high": 4160},
    "1024x1536": {"low": 408, "medium": 1584, "high": 6240},
    "1536x1024": {"low": 400, "medium": 1568, "high": 6208},
}
PARTIAL_IMAGE_TOKENS = 100
SOURCE_IMAGE_TOKENS = 388


def output_tokens(job: SimJob) -> int:
    quality = job.quality if job.quality in ("low", "medium", "high") else "medium"
    size = f"{job.width}x{job.height}"
    if size in OUTPUT_TOKENS:
        return OUTPUT_TOKENS[size][quality]
    square = OUTPUT_TOKENS["1024x1024"][quality]
    return max(1, round(square * job.width * job.height / (1024 * 1024)))


def usage(job: SimJob, images: int, partials_per_image: int) -> dict[str, Any] | None:
    """The usage of `images` images (None for dall-e, which reports none)."""
    if not job.spec.gpt:
        return None
    text = max(1, len(job.prompt) // 4)
    image_in = SOURCE_IMAGE_TOKENS * len(job.sources)
    out_images = images * (output_tokens(job) + PARTIAL_IMAGE_TOKENS * partials_per_image)
    return {
        "total_tokens": text + image_in + out_images,
        "input_tokens": text + image_in,
        "output_tokens": out_images,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
        "output_tokens_details": {"image_tokens": out_images, "text_tokens": 0},
    }
