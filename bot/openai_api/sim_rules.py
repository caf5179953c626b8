"""The simulator's validation: what the Images API accepts, and OpenAI-style refusals.

Each refusal is an `{"error": {"message", "type", "param", "code"}}` body with the status OpenAI
uses. Parameters a model does not take are refused as unknown, like the real API, so a client
that sends a field the model lacks fails in tests rather than in production.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from bot.catalog.names import Operation
from bot.openai_api.catalog import (
    ModelSpec,
    fit_gpt2_size,
    gpt2_size_problems,
    model_spec,
    nearest_standard_size,
    parse_wxh,
)

# Every model may be sent stream and partial_images; streaming a dall-e model is then refused.
COMMON = {"model", "prompt", "n", "size", "user", "quality", "stream", "partial_images"}
GPT_ONLY = {"background", "output_format", "output_compression"}
# images/edits has no `moderation` (the SDK's ImageEditParams): generations only.
GPT_GENERATIONS_ONLY = {"moderation"}
DALL_E_ONLY = {"response_format"}
DALL_E_2_MAX_BYTES = 4_000_000


class SimError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = "invalid_value",
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (
            status,
            message,
            param,
            code,
            kind,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class Source:
    name: str  # the multipart name: image[], image or mask
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass
class SimJob:
    """A request the simulator accepted, with every default resolved."""

    route: str  # generations | edits
    spec: ModelSpec
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    output_format: str
    background: str
    stream: bool
    partial_images: int
    user: str | None
    sources: list[tuple[int, int]] = field(default_factory=list)


def check(
    route: str, fields: dict[str, Any], files: list[Source], served: frozenset[str]
) -> SimJob:
    """Validate a request's fields (typed JSON values, or multipart text) and files."""
    edit = route == "edits"
    name = str(fields.get("model") or "dall-e-2")  # OpenAI's default model
    spec = model_spec(name)
    if spec is None or spec.name != name or name not in served:
        raise SimError(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if edit and Operation.EDIT not in spec.operations:
        raise SimError(400, f"Invalid value: '{name}'. Edits are not available.", param="model")
    allowed = set(COMMON)
    allowed |= GPT_ONLY if spec.gpt else DALL_E_ONLY
    if spec.gpt and not edit:
        allowed |= GPT_GENERATIONS_ONLY
    if spec.styles:
        allowed.add("style")
    if edit and spec.fidelities:
        allowed.add("input_fidelity")
    for key in fields:
        if key not in allowed:
            raise SimError(400, f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise SimError(400, "Missing required parameter: 'prompt'.", param="prompt")
    if len(prompt) > spec.prompt_max:
        raise SimError(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{spec.prompt_max}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    n = _int(fields, "n", 1, 1, spec.n_max)
    stream = _bool(fields, "stream")
    if stream and not spec.gpt:
        raise SimError(400, "Streaming is only supported for GPT image models.", param="stream")
    partial_images = _int(fields, "partial_images", 0, 0, 3)
    qualities = spec.qualities or ("standard",)  # dall-e-2 knows only standard
    quality = _choice(fields, "quality", qualities, spec.default_quality or "standard")
    output_format = _choice(fields, "output_format", ("png", "jpeg", "webp"), "png")
    background = _choice(fields, "background", spec.backgrounds or ("auto",), "auto")
    if background == "transparent" and output_format == "jpeg":
        raise SimError(
            400, "Transparent background requires output_format png or webp.", param="background"
        )
    _choice(fields, "moderation", ("low", "auto"), "auto")
    _choice(fields, "style", spec.styles or ("vivid",), "vivid")
    _choice(fields, "input_fidelity", spec.fidelities or ("low",), "low")
    _choice(fields, "response_format", ("url", "b64_json"), "url")
    if "output_compression" in fields:
        _int(fields, "output_compression", 100, 0, 100)
    user = fields.get("user")
    if user is not None and not isinstance(user, str):
        raise SimError(400, "Invalid type for 'user': expected a string.", param="user")
    sources = _check_files(spec, files) if edit else []
    width, height = _size(spec, fields.get("size"), sources)
    return SimJob(
        route=route,
        spec=spec,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        quality=quality,
        output_format=output_format,
        background=background,
        stream=stream,
        partial_images=partial_images,
        user=user,
        sources=sources,
    )


def typed_form(form: dict[str, str]) -> dict[str, Any]:
    """Multipart text fields as JSON would have them: numbers and booleans parsed."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        if key in ("n", "partial_images", "output_compression") and value.lstrip("-").isdigit():
            out[key] = int(value)
        elif key == "stream" and value in ("true", "false"):
            out[key] = value == "true"
        else:
            out[key] = value
    return out


def _int(fields: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimError(400, f"Invalid type for '{key}': expected an integer.", param=key)
    if not low <= value <= high:
        raise SimError(
            400,
            f"Invalid '{key}': expected a value between {low} and {high}, got {value}.",
            param=key,
            code="integer_out_of_range" if key != "n" else "invalid_value",
        )
    return value


def _bool(fields: dict[str, Any], key: str) -> bool:
    value = fields.get(key, False)
    if not isinstance(value, bool):
        raise SimError(400, f"Invalid type for '{key}': expected a boolean.", param=key)
    return value


def _choice(fields: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = fields.get(key, default)
    if value not in allowed:
        raise SimError(
            400,
            f"Invalid value: '{value}'. Supported values are: "
            + ", ".join(f"'{a}'" for a in allowed)
            + ".",
            param=key,
        )
    return str(value)


def _size(spec: ModelSpec, value: object, sources: list[tuple[int, int]]) -> tuple[int, int]:
    takes_auto = spec.sizes is None or "auto" in spec.sizes
    text = str(value) if value is not None else "auto" if takes_auto else spec.default_size
    if text == "auto" and (spec.sizes is None or "auto" in spec.sizes):
        # The output follows the first source's shape, within what the model can make.
        if not sources:
            return 1024, 1024
        if spec.sizes is None:
            return fit_gpt2_size(*sources[0])
        parsed = parse_wxh(nearest_standard_size(*sources[0]))
        assert parsed is not None
        return parsed
    parsed = parse_wxh(text)
    if spec.sizes is not None:
        if text not in spec.sizes or parsed is None:
            allowed = ", ".join(f"'{s}'" for s in spec.sizes)
            raise SimError(
                400, f"Invalid value: '{text}'. Supported values are: {allowed}.", param="size"
            )
        return parsed
    if parsed is None or gpt2_size_problems(*parsed):
        raise SimError(
            400,
            f"Invalid size '{text}': sides must be multiples of 16, the longest at most 3840, "
            "the aspect ratio at most 3:1, and 655,360 to 8,294,400 pixels in total.",
            param="size",
            code="invalid_size",
        )
    return parsed


def _check_files(spec: ModelSpec, files: list[Source]) -> list[tuple[int, int]]:
    images = [f for f in files if f.name in ("image", "image[]")]
    masks = [f for f in files if f.name == "mask"]
    others = [f.name for f in files if f not in images and f not in masks]
    if others:
        raise SimError(400, f"Unknown parameter: '{others[0]}'.", param=others[0])
    if not images:
        raise SimError(400, "Missing required parameter: 'image'.", param="image")
    if len(images) > spec.max_edit_images:
        raise SimError(
            400,
            f"Too many images: at most {spec.max_edit_images} for {spec.name}.",
            param="image",
        )
    sizes = []
    for source in images:
        fmt, size, _ = _open(source, "image")
        if not spec.gpt and (fmt != "PNG" or size[0] != size[1]):
            raise SimError(400, "Invalid input image: dall-e-2 needs a square PNG.", param="image")
        if not spec.gpt and len(source.data) >= DALL_E_2_MAX_BYTES:
            raise SimError(400, "Invalid input image: must be less than 4 MB.", param="image")
        sizes.append(size)
    if len(masks) > 1:
        raise SimError(400, "Only one mask may be given.", param="mask")
    if masks:
        fmt, size, alpha = _open(masks[0], "mask")
        if fmt != "PNG" or not alpha:
            raise SimError(400, "Invalid mask: must be a PNG with an alpha channel.", param="mask")
        if size != sizes[0]:
            raise SimError(
                400, "Invalid mask: must be the same size as the first image.", param="mask"
            )
    return sizes


def _open(source: Source, param: str) -> tuple[str, tuple[int, int], bool]:
    try:
        with Image.open(io.BytesIO(source.data), formats=("PNG", "JPEG", "WEBP")) as image:
            alpha = image.mode in ("RGBA", "LA") or "transparency" in image.info
            return str(image.format), image.size, alpha
    except Exception:  # Pillow raises many types on bad input
        raise SimError(
            400,
            f"Invalid '{param}': the file is not a PNG, JPEG or WebP image.",
            param=param,
            code="invalid_image_format",
        ) from None
