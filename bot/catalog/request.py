"""From the options a member types (the Discord/CLI vocabulary) to a validated, priced request.

The vocabulary is DESIGN.md's: prompt, size, quality, quantity, background, style, fidelity,
format, images, mask. Every refusal names the option and says what is allowed for the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from bot.catalog.capabilities import OPTIONAL, capability
from bot.catalog.errors import CatalogError, FieldError
from bot.catalog.inputs import ImageGenInput, input_model
from bot.catalog.names import Model, Operation
from bot.catalog.pricing import total_price
from bot.catalog.sizes import (
    format_size,
    gpt2_side_ok,
    gpt2_upstream_warnings,
    nearest_gpt2_sizes,
    parse_size,
)


@dataclass(frozen=True)
class RequestOptions:
    """What a member asked for, in their words. None means "not given"."""

    prompt: str
    size: str | None = None
    quality: str | None = None
    quantity: int | None = None
    background: str | None = None
    style: str | None = None
    fidelity: str | None = None
    format: str | None = None
    images: tuple[str, ...] = ()
    mask: str | None = None

    def with_sources(self, images: tuple[str, ...], mask: str | None) -> RequestOptions:
        return replace(self, images=images, mask=mask)

    def as_dict(self) -> dict[str, Any]:
        """The given options, for storage and display (sources excluded)."""
        keys = ("prompt", "size", "quality", "quantity", "background", "style", "fidelity")
        out = {k: getattr(self, k) for k in (*keys, "format") if getattr(self, k) is not None}
        return out


@dataclass(frozen=True)
class ImageRequest:
    """A request the catalog accepted: the closed input model, its price and any warnings."""

    input: ImageGenInput
    buzz: int
    warnings: tuple[str, ...] = ()
    options: RequestOptions | None = field(default=None, compare=False)

    @property
    def model(self) -> Model:
        return self.input.MODEL

    @property
    def operation(self) -> Operation:
        return self.input.OPERATION

    @property
    def quantity(self) -> int:
        return int(getattr(self.input, "quantity", 1))

    def step(self) -> dict[str, Any]:
        """The imageGen step exactly as submitted: what was set, never a field the model lacks."""
        payload = self.input.model_dump(by_alias=True, exclude_unset=True, exclude_none=True)
        # Discriminators are always sent, set or not.
        payload = {
            "engine": self.input.engine,
            "model": self.input.MODEL.value,
            "operation": self.input.OPERATION.value,
            **payload,
        }
        return {"$type": "imageGen", "input": payload}


_HINTS = {
    "background": "background is only available for gpt-image-1.5 and gpt-image-1",
    "style": "style is only available for dall-e-3",
    "fidelity": "fidelity is only available for gpt-image-1.5 edits",
    "mask": "a mask is not available for {model}: gpt-image-2 or gpt-image-1 take masks",
}

_FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "webp": "webP"}
_FIELD_OF_LOC = {
    "width": "size",
    "height": "size",
    "output_format": "format",
    "input_fidelity": "fidelity",
    "images": "image",
    "image": "image",
    "mask_image": "mask",
}
_FIELD_OF_CUSTOM = {
    "prompt_blank": "prompt",
    "transparent_format": "background",
    "multiple_of_16": "size",
    "size_pair": "size",
}


def _where(model: Model, operation: Operation) -> str:
    return f"{model.value} edits" if operation is Operation.EDIT else model.value


def build_request(
    model: Model,
    operation: Operation,
    options: RequestOptions,
    *,
    input_size: tuple[int, int] | None = None,
) -> ImageRequest:
    """Validate and price. Raises CatalogError naming every bad option; nothing partial leaks."""
    cls = input_model(model, operation)
    if cls is None and not any(input_model(model, op) for op in Operation):
        raise CatalogError.single(
            "model", f"{model.value} is not available on this bot (the orchestrator lacks it)"
        )
    if cls is None:
        raise CatalogError.single(
            "operation", f"{model.value} cannot edit images: it only creates them"
        )
    errors: list[FieldError] = []
    values: dict[str, Any] = {"prompt": options.prompt}
    where = _where(model, operation)

    can = capability(model, operation)
    for option in (*OPTIONAL, "mask"):
        taken = can is not None and (can.mask if option == "mask" else can.takes(option))
        if getattr(options, option) is not None and not taken:
            hint = _HINTS[option].format(model=model.value)
            if option == "mask" and operation is Operation.CREATE:
                hint = "a mask is only used when editing an image"
            errors.append(FieldError(option, hint))

    if options.quantity is not None:
        if model is Model.DALL_E_3:
            errors.append(FieldError("quantity", "dall-e-3 makes one image per request"))
        else:
            values["quantity"] = options.quantity
    if options.quality is not None:
        if model is Model.DALL_E_2:
            errors.append(FieldError("quality", "dall-e-2 has no quality option"))
        else:
            values["quality"] = options.quality.strip().lower()
    if options.format is not None:
        fmt = _FORMATS.get(options.format.strip().lower())
        if fmt is None:
            errors.append(FieldError("format", "format must be one of jpeg, png, webp"))
        else:
            values["output_format"] = fmt
    for name, key in (("background", "background"), ("style", "style")):
        value = getattr(options, name)
        if value is not None and not any(e.field == name for e in errors):
            values[key] = value.strip().lower()
    if options.fidelity is not None and not any(e.field == "fidelity" for e in errors):
        values["input_fidelity"] = options.fidelity.strip().lower()

    _apply_sources(model, operation, options, values, errors)
    warnings = _apply_size(model, operation, options, values, errors, where)
    _apply_defaults(model, operation, values)

    try:
        inp = cls(**values)
    except ValidationError as exc:
        # Report every bad option at once; the first message per option wins.
        seen = {e.field for e in errors}
        errors += [e for e in _translate(exc, cls, where) if e.field not in seen]
    if errors:
        raise CatalogError(errors)

    width, height = _priced_size(inp, input_size)
    if model is Model.GPT_IMAGE_2 and (width is None or height is None):
        raise CatalogError.single(
            "size",
            "gpt-image-2 edits without a size are priced from the first source image's "
            "dimensions, which are unknown: give a size",
        )
    return ImageRequest(inp, price_input(inp, input_size), tuple(warnings), options)


def price_input(inp: ImageGenInput, input_size: tuple[int, int] | None = None) -> int:
    """Buzz for a validated input; gpt-image-2 edits without a size use the first source's size."""
    width, height = _priced_size(inp, input_size)
    quality = getattr(inp, "quality", None)
    return total_price(inp.MODEL, quality, getattr(inp, "quantity", 1), width, height)


def _apply_sources(
    model: Model,
    operation: Operation,
    options: RequestOptions,
    values: dict[str, Any],
    errors: list[FieldError],
) -> None:
    if operation is Operation.CREATE:
        if options.images:
            errors.append(FieldError("image", "source images are only used when editing"))
        return
    if not options.images:
        errors.append(FieldError("image", f"{_where(model, operation)} need a source image"))
        return
    if model is Model.DALL_E_2:
        if len(options.images) > 1:
            errors.append(FieldError("image", "dall-e-2 edits take exactly one source image"))
        values["image"] = options.images[0]
    else:
        values["images"] = list(options.images)
    if options.mask is not None and not any(e.field == "mask" for e in errors):
        values["mask_image" if model is Model.GPT_IMAGE_2 else "mask"] = options.mask


def _apply_size(
    model: Model,
    operation: Operation,
    options: RequestOptions,
    values: dict[str, Any],
    errors: list[FieldError],
    where: str,
) -> list[str]:
    if options.size is None:
        return []
    text = options.size.strip().lower()
    if model is not Model.GPT_IMAGE_2:
        values["size"] = text.replace("×", "x").replace(" ", "")
        return []
    if text == "auto" and operation is Operation.EDIT:
        return []
    parsed = parse_size(text)
    if parsed is None:
        errors.append(
            FieldError("size", f"size must be WIDTHxHEIGHT (for example 1024x1024) for {where}")
        )
        return []
    width, height = parsed
    if not (gpt2_side_ok(width) and gpt2_side_ok(height)):
        errors.append(FieldError("size", _gpt2_size_message(width, height, options)))
        return []
    values["width"], values["height"] = width, height
    return gpt2_upstream_warnings(width, height)


def _gpt2_size_message(width: int, height: int, options: RequestOptions) -> str:
    quality = (options.quality or "high").strip().lower()
    quantity = options.quantity or 1
    suggestions = []
    for w, h in nearest_gpt2_sizes(width, height):
        try:
            price = total_price(Model.GPT_IMAGE_2, quality, quantity, w, h)
            suggestions.append(f"{format_size(w, h)} ({price} Buzz)")
        except (KeyError, AttributeError, ValueError):
            suggestions.append(format_size(w, h))
    return (
        f"size must have both sides between 256 and 3840 and each a multiple of 16 for "
        f"gpt-image-2; {width}x{height} is not. Nearest valid: {', '.join(suggestions)}"
    )


def _apply_defaults(model: Model, operation: Operation, values: dict[str, Any]) -> None:
    """Send what decides the price and the picture explicitly, not trusting upstream defaults."""
    cls = input_model(model, operation)
    assert cls is not None
    for name in ("quality", "quantity", "background", "style", "input_fidelity", "size"):
        if name in cls.model_fields and name not in values:
            info = cls.model_fields[name]
            default = None if info.is_required() else info.default
            if name == "size" and model in (Model.DALL_E_3, Model.DALL_E_2):
                default = "1024x1024"  # required by the schema; the member may leave it out
            if default is not None:
                values[name] = default
    if model is Model.GPT_IMAGE_2 and operation is Operation.CREATE:
        values.setdefault("width", 1024)
        values.setdefault("height", 1024)
    # A transparent background needs an alpha format: choose png rather than upstream's jpeg.
    if values.get("background") == "transparent" and "output_format" not in values:
        values["output_format"] = "png"


def _priced_size(
    inp: ImageGenInput, input_size: tuple[int, int] | None
) -> tuple[int | None, int | None]:
    width = getattr(inp, "width", None)
    height = getattr(inp, "height", None)
    if width is not None and height is not None:
        return width, height
    if inp.MODEL is Model.GPT_IMAGE_2 and input_size is not None:
        return input_size
    return None, None


def _allowed(cls: type[ImageGenInput], name: str) -> list[str]:
    def walk(annotation: Any) -> list[str]:
        if get_origin(annotation) is Literal:
            return [str(v) for v in get_args(annotation)]
        return [v for arg in get_args(annotation) for v in walk(arg)]

    return walk(cls.model_fields[name].annotation)


def _translate(exc: ValidationError, cls: type[ImageGenInput], where: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        kind = err["type"]
        name = loc[0] if loc else ""
        option = _FIELD_OF_LOC.get(name, name) if name else _FIELD_OF_CUSTOM.get(kind, "request")
        ctx = err.get("ctx") or {}
        if kind == "literal_error" and name in cls.model_fields:
            allowed = [("webp" if v == "webP" else v) for v in _allowed(cls, name)]
            message = f"{option} must be one of {', '.join(allowed)} for {where}"
        elif kind in ("greater_than_equal", "less_than_equal") and name in cls.model_fields:
            lo, hi = _bounds(cls, name)
            message = f"{option} must be between {lo} and {hi} for {where}"
        elif kind == "string_too_long":
            got = len(err.get("input") or "")
            message = (
                f"{option} is {got:,} characters; {where} allows at most {ctx['max_length']:,}"
            )
        elif kind == "too_long":
            message = f"at most {ctx.get('max_length')} source images for {where}"
        elif kind == "missing":
            message = f"{option} is required for {where}"
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            message = f"{option} must be a whole number"
        else:
            message = err["msg"].removeprefix("Value error, ")
        errors.append(FieldError(option, message))
    return errors


def _bounds(cls: type[ImageGenInput], name: str) -> tuple[Any, Any]:
    lo = hi = None
    for meta in cls.model_fields[name].metadata:
        lo = getattr(meta, "ge", lo)
        hi = getattr(meta, "le", hi)
    return lo, hi
