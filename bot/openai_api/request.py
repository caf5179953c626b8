"""From a member's options (bot/catalog RequestOptions) to the exact Images API request, priced.

Refusals are the Civitai lane's CatalogError/FieldError, naming the member's option (prompt, size,
quality, quantity, background, style, fidelity, format, image, mask), so the front end shows both
lanes' refusals the same way. For the GPT image models n, size, quality and output_format are
always sent (the member's choice or the bot's default), so the result's size and format are
known before it arrives; an edit left without a size follows the first source's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.catalog.errors import CatalogError, FieldError
from bot.catalog.names import Operation
from bot.catalog.request import RequestOptions
from bot.openai_api.catalog import (
    MODEL_NAMES,
    ModelSpec,
    fit_gpt2_size,
    gpt2_size_problems,
    model_spec,
    nearest_standard_size,
    parse_wxh,
)
from bot.openai_api.identity import looks_like_raw_id
from bot.openai_api.pricing import PriceTable

GENERATIONS = "images/generations"
EDITS = "images/edits"
_FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "webp": "webp"}
# seed 003: gpt-image-2 outputs above 2560x1440 are experimental.
GPT2_EXPERIMENTAL_PIXELS = 2560 * 1440


@dataclass(frozen=True)
class LaneSettings:
    """The operator's settings for the lane (the lead wires them to bot/config.py)."""

    partial_images: int = 2  # 0-3 previews per image while streaming (0: the final image only)
    moderation: str | None = None  # "auto" or "low"; None leaves OpenAI's default
    output_compression: int | None = None  # 0-100 for jpeg/webp; None leaves OpenAI's default
    default_format: str = "jpeg"  # what a GPT image model answers in when the member says nothing
    served: frozenset[str] | None = None  # the models the endpoint really serves; None: all

    def __post_init__(self) -> None:
        if not 0 <= self.partial_images <= 3:
            raise ValueError("partial_images must be between 0 and 3")
        if self.moderation not in (None, "auto", "low"):
            raise ValueError("moderation must be auto or low")
        if self.output_compression is not None and not 0 <= self.output_compression <= 100:
            raise ValueError("output_compression must be between 0 and 100")
        if self.default_format not in ("jpeg", "png", "webp"):
            raise ValueError("default_format must be jpeg, png or webp")


@dataclass(frozen=True)
class OpenAIRequest:
    """A request the lane accepted: the wire fields, its price, and what the result will be."""

    model: str
    operation: Operation
    # The JSON body of a generation, or the non-file multipart fields of an edit.
    fields: dict[str, Any] = field(compare=False)
    buzz: int
    n: int
    size: str  # WIDTHxHEIGHT, or "auto" only when the member chose it
    quality: str | None
    output_format: str
    image_field: str  # the multipart name of each edit source
    warnings: tuple[str, ...] = ()
    priced_size: tuple[int, int] | None = None
    options: RequestOptions | None = field(default=None, compare=False)

    @property
    def endpoint(self) -> str:
        return EDITS if self.operation is Operation.EDIT else GENERATIONS

    @property
    def stream(self) -> bool:
        return bool(self.fields.get("stream"))


def build_openai_request(
    model: str,
    operation: Operation,
    options: RequestOptions,
    *,
    prices: PriceTable,
    user: str | None = None,
    settings: LaneSettings | None = None,
    input_size: tuple[int, int] | None = None,
) -> OpenAIRequest:
    """Validate and price. Raises CatalogError naming every bad option; nothing partial leaks.

    `user` is user_hash(...)'s value, never a raw id; `input_size` is the first edit source's
    pixel size (it decides an edit's output size when the member gives none).
    """
    settings = settings or LaneSettings()
    if user is not None and looks_like_raw_id(user):
        raise ValueError("user must be user_hash(...), never a raw Discord id")
    spec = model_spec(model)
    if spec is None:
        raise CatalogError.single(
            "model", f"unknown model {model!r}: use one of {', '.join(MODEL_NAMES)}"
        )
    if settings.served is not None and spec.name not in settings.served:
        raise CatalogError.single("model", f"{spec.name} is not available on this bot")
    if operation not in spec.operations:
        raise CatalogError.single(
            "operation", f"{spec.name} cannot edit images: it only creates them"
        )
    where = f"{spec.name} edits" if operation is Operation.EDIT else spec.name
    check = _Checker(spec, operation, options, where)
    fields = check.all(settings, input_size)
    if check.errors:
        raise CatalogError(check.errors)

    width_height = parse_wxh(check.size) if check.size != "auto" else input_size
    priced = width_height if spec.name == "gpt-image-2" else None
    buzz = prices.price(spec.name, check.quality, check.n, *(width_height or (None, None)))
    if buzz is None:
        raise _no_price(prices, spec, check.quality)

    body: dict[str, Any] = {"model": spec.name, "prompt": options.prompt, **fields}
    if user:
        body["user"] = user
    return OpenAIRequest(
        model=spec.name,
        operation=operation,
        fields=body,
        buzz=buzz,
        n=check.n,
        size=check.size,
        quality=check.quality,
        output_format=check.output_format,
        image_field=spec.image_field,
        warnings=tuple(check.warnings),
        priced_size=priced,
        options=options,
    )


def _no_price(prices: PriceTable, spec: ModelSpec, quality: str | None) -> CatalogError:
    qualities = prices.priced_qualities(spec.name)
    if not prices.is_priced(spec.name):
        return CatalogError.single(
            "model", f"{spec.name} has no Buzz price on this bot yet: an admin must set one"
        )
    return CatalogError.single(
        "quality",
        f"quality {quality} has no Buzz price for {spec.name}: choose {', '.join(qualities or ())}",
    )


class _Checker:
    """Checks each option in turn, collecting every refusal, and works out the wire fields."""

    def __init__(
        self, spec: ModelSpec, operation: Operation, options: RequestOptions, where: str
    ) -> None:
        self.spec, self.operation, self.options, self.where = spec, operation, options, where
        self.errors: list[FieldError] = []
        self.warnings: list[str] = []
        self.n = 1
        self.quality: str | None = spec.default_quality
        self.size = spec.default_size
        self.output_format = spec.result_format or "jpeg"

    def refuse(self, option: str, message: str) -> None:
        if not any(e.field == option for e in self.errors):
            self.errors.append(FieldError(option, message))

    def all(self, settings: LaneSettings, input_size: tuple[int, int] | None) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {}
        self._prompt()
        self._quantity()
        self._quality()
        self._sources()
        self._size(input_size)
        self._experimental()
        out["n"] = self.n
        out["size"] = self.size
        if spec.qualities:
            out["quality"] = self.quality
        style = self._choice("style", self.options.style, spec.styles, "dall-e-3")
        if spec.styles:
            out["style"] = style or spec.default_style
        background = self._choice("background", self.options.background, spec.backgrounds)
        fidelity = self._fidelity()
        self._format(settings, background)
        if background:
            out["background"] = background
        if fidelity:
            out["input_fidelity"] = fidelity
        if not spec.gpt:
            out["response_format"] = "b64_json"  # dall-e answers a URL unless told otherwise
            return out
        out["output_format"] = self.output_format
        if settings.output_compression is not None and self.output_format != "png":
            out["output_compression"] = settings.output_compression
        if settings.moderation is not None and self.operation is Operation.CREATE:
            out["moderation"] = settings.moderation  # images/edits has no such field
        out["stream"] = True
        out["partial_images"] = settings.partial_images
        return out

    def _prompt(self) -> None:
        prompt = self.options.prompt
        if not prompt.strip():
            self.refuse("prompt", "prompt must not be empty")
        elif len(prompt) > self.spec.prompt_max:
            self.refuse(
                "prompt",
                f"prompt is {len(prompt):,} characters; {self.where} allows at most "
                f"{self.spec.prompt_max:,}",
            )

    def _quantity(self) -> None:
        quantity = self.options.quantity
        if quantity is None:
            return
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            self.refuse("quantity", "quantity must be a whole number")
        elif self.spec.n_max == 1 and quantity != 1:
            self.refuse("quantity", f"{self.spec.name} makes one image per request")
        elif not 1 <= quantity <= self.spec.n_max:
            self.refuse(
                "quantity", f"quantity must be between 1 and {self.spec.n_max} for {self.where}"
            )
        else:
            self.n = quantity

    def _quality(self) -> None:
        if self.options.quality is None:
            return
        if not self.spec.qualities:
            self.refuse("quality", f"{self.spec.name} has no quality option")
            return
        value = self._choice("quality", self.options.quality, self.spec.qualities)
        if value:
            self.quality = value

    def _choice(
        self, option: str, given: str | None, allowed: tuple[str, ...], owner: str | None = None
    ) -> str | None:
        if given is None:
            return None
        if not allowed:
            hint = f"{option} is only available for {owner}" if owner else None
            self.refuse(option, hint or f"{self.spec.name} has no {option} option")
            return None
        value = given.strip().lower()
        if value not in allowed:
            if option == "background" and value == "transparent":
                self.refuse(
                    option,
                    f"{self.spec.name} cannot make a transparent background: "
                    "use gpt-image-1.5 or gpt-image-1",
                )
            else:
                self.refuse(
                    option, f"{option} must be one of {', '.join(allowed)} for {self.where}"
                )
            return None
        return value

    def _fidelity(self) -> str | None:
        if self.options.fidelity is None:
            return None
        if self.operation is Operation.CREATE:
            self.refuse("fidelity", "fidelity is only used when editing images")
            return None
        owner = "gpt-image-1.5, gpt-image-1 and gpt-image-1-mini edits"
        return self._choice("fidelity", self.options.fidelity, self.spec.fidelities, owner)

    def _format(self, settings: LaneSettings, background: str | None) -> None:
        given = self.options.format
        fmt = _FORMATS.get(given.strip().lower()) if given is not None else None
        if given is not None and fmt is None:
            self.refuse("format", "format must be one of jpeg, png, webp")
        if self.spec.result_format is not None:  # dall-e: png, and nothing else
            if fmt not in (None, self.spec.result_format):
                self.refuse("format", f"{self.spec.name} only answers in png on this lane")
            return
        if fmt is None:
            fmt = "png" if background == "transparent" else settings.default_format
        elif background == "transparent" and fmt == "jpeg":
            self.refuse("background", "a transparent background needs format png or webp, not jpeg")
        self.output_format = fmt

    def _sources(self) -> None:
        images, mask, spec = self.options.images, self.options.mask, self.spec
        if self.operation is Operation.CREATE:
            if images:
                self.refuse("image", "source images are only used when editing")
            if mask is not None:
                self.refuse("mask", "a mask is only used when editing an image")
            return
        if not images:
            self.refuse("image", f"{self.where} need a source image")
        elif len(images) > spec.max_edit_images:
            self.refuse(
                "image",
                f"{spec.name} edits take exactly one source image"
                if spec.max_edit_images == 1
                else f"at most {spec.max_edit_images} source images for {self.where}",
            )
        if mask is not None and not spec.mask:
            self.refuse("mask", f"a mask is not available for {spec.name}")

    def _size(self, input_size: tuple[int, int] | None) -> None:
        spec, given = self.spec, self.options.size
        edit = self.operation is Operation.EDIT
        if given is None:
            if edit and input_size and spec.gpt:
                self.size = (
                    "{}x{}".format(*fit_gpt2_size(*input_size))
                    if spec.sizes is None
                    else nearest_standard_size(*input_size)
                )
            return
        text = given.strip().lower().replace("×", "x").replace(" ", "")
        if spec.sizes is not None:
            allowed = spec.sizes
            if text not in allowed:
                self.refuse("size", f"size must be one of {', '.join(allowed)} for {self.where}")
            else:
                self.size = text
            return
        if text == "auto":
            if not edit:
                self.refuse(
                    "size", "gpt-image-2 needs a size such as 1024x1024: its price depends on it"
                )
            elif input_size is None:
                self.refuse(
                    "size",
                    "gpt-image-2 edits without a size are priced from the first source image, "
                    "whose size is unknown: give a size",
                )
            else:
                self.size = "auto"
            return
        parsed = parse_wxh(text)
        if parsed is None:
            self.refuse(
                "size", f"size must be WIDTHxHEIGHT (for example 1024x1024) for {self.where}"
            )
            return
        problems = gpt2_size_problems(*parsed)
        if problems:
            near = "{}x{}".format(*fit_gpt2_size(*parsed))
            self.refuse(
                "size",
                f"{text} does not suit gpt-image-2: {'; '.join(problems)}. Nearest valid: {near}",
            )
            return
        self.size = text

    def _experimental(self) -> None:
        parsed = parse_wxh(self.size) if self.spec.sizes is None else None
        if parsed and parsed[0] * parsed[1] > GPT2_EXPERIMENTAL_PIXELS:
            self.warnings.append(
                f"{self.size} is larger than 2560x1440: OpenAI calls such gpt-image-2 outputs "
                "experimental"
            )
