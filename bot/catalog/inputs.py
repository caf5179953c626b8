"""One closed input model per (model, operation), field for field as the OpenAPI schema has them.

Names, enums, defaults and limits come from the schema's allOf chain (engine → model →
operation). Python names are snake_case; the aliases are the schema's camelCase names. Rules the
schema does not state but the guide does (gpt-image-2 multiples of 16, width/height together,
transparent needs png/webP) are validators here, with messages that name the option.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from bot.catalog.names import Model, Operation
from bot.catalog.text import has_visible_text

OutputFormat = Literal["jpeg", "png", "webP"]
Background = Literal["auto", "transparent", "opaque"]
GptSize = Literal["1024x1024", "1536x1024", "1024x1536"]
SourceImage = Annotated[str, Field(min_length=1)]

GPT2_MIN_SIDE = 256
GPT2_MAX_SIDE = 3840
GPT2_MULTIPLE = 16


class ImageGenInput(BaseModel):
    """Fields every imageGen input has (ImageGenInput + OpenApiImageGenInput)."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )
    MODEL: ClassVar[Model]
    OPERATION: ClassVar[Operation]
    PROMPT_MAX: ClassVar[int]

    engine: Literal["openai"] = "openai"
    output_format: OutputFormat | None = None
    image_metadata: str | None = None

    @field_validator("prompt", check_fields=False)
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not has_visible_text(value):
            raise PydanticCustomError(
                "prompt_blank",
                "prompt has no visible text: it is empty, or only spaces and invisible characters",
            )
        return value

    @model_validator(mode="after")
    def _transparent_needs_alpha_format(self) -> ImageGenInput:
        if getattr(self, "background", None) == "transparent" and self.output_format == "jpeg":
            raise PydanticCustomError(
                "transparent_format",
                "a transparent background needs format png or webp, not jpeg",
            )
        return self


def _check_gpt2_side(name: str, value: int | None) -> None:
    if value is not None and value % GPT2_MULTIPLE:
        raise PydanticCustomError(
            "multiple_of_16",
            "{name} must be a multiple of 16 for gpt-image-2, got {value}",
            {"name": name, "value": value},
        )


class Gpt2Base(ImageGenInput):
    MODEL = Model.GPT_IMAGE_2
    PROMPT_MAX = 32000

    model: Literal["gpt-image-2"] = "gpt-image-2"
    prompt: str = Field(max_length=32000)
    width: int | None = Field(1024, ge=GPT2_MIN_SIDE, le=GPT2_MAX_SIDE)
    height: int | None = Field(1024, ge=GPT2_MIN_SIDE, le=GPT2_MAX_SIDE)
    quantity: int = Field(1, ge=1, le=4)
    quality: Literal["low", "medium", "high"] = "high"

    @model_validator(mode="after")
    def _sides_multiple_of_16(self) -> Gpt2Base:
        _check_gpt2_side("width", self.width)
        _check_gpt2_side("height", self.height)
        return self


class Gpt2Create(Gpt2Base):
    OPERATION = Operation.CREATE
    operation: Literal["createImage"] = "createImage"
    width: int = Field(1024, ge=GPT2_MIN_SIDE, le=GPT2_MAX_SIDE)
    height: int = Field(1024, ge=GPT2_MIN_SIDE, le=GPT2_MAX_SIDE)


class Gpt2Edit(Gpt2Base):
    OPERATION = Operation.EDIT
    operation: Literal["editImage"] = "editImage"
    images: list[SourceImage] = Field(min_length=1, max_length=16)
    mask_image: str | None = None
    # Null on both means "auto": the output size follows the input images.
    width: int | None = Field(None, ge=GPT2_MIN_SIDE, le=GPT2_MAX_SIDE)
    height: int | None = Field(None, ge=GPT2_MIN_SIDE, le=GPT2_MAX_SIDE)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Gpt2Edit:
        if (self.width is None) != (self.height is None):
            raise PydanticCustomError(
                "size_pair", "width and height must be given together, or neither (auto)"
            )
        return self


class Gpt15Base(ImageGenInput):
    MODEL = Model.GPT_IMAGE_1_5
    PROMPT_MAX = 32000

    model: Literal["gpt-image-1.5"] = "gpt-image-1.5"
    prompt: str = Field(max_length=32000)
    size: GptSize = "1024x1024"
    quantity: int = Field(1, ge=1, le=4)
    background: Background = "auto"
    quality: Literal["low", "medium", "high"] = "high"


class Gpt15Create(Gpt15Base):
    OPERATION = Operation.CREATE
    operation: Literal["createImage"] = "createImage"


class Gpt15Edit(Gpt15Base):
    OPERATION = Operation.EDIT
    operation: Literal["editImage"] = "editImage"
    images: list[SourceImage] = Field(min_length=1, max_length=16)
    input_fidelity: Literal["low", "high"] = "high"
    size: Literal["auto", "1024x1024", "1536x1024", "1024x1536"] = "auto"  # type: ignore[assignment]


class Gpt1Base(ImageGenInput):
    MODEL = Model.GPT_IMAGE_1
    PROMPT_MAX = 32000

    model: Literal["gpt-image-1"] = "gpt-image-1"
    prompt: str = Field(max_length=32000)
    size: GptSize = "1024x1024"
    quantity: int = Field(1, ge=1, le=10)
    background: Background = "opaque"
    quality: Literal["auto", "high", "medium", "low"] = "auto"


class Gpt1Create(Gpt1Base):
    OPERATION = Operation.CREATE
    operation: Literal["createImage"] = "createImage"


class Gpt1Edit(Gpt1Base):
    OPERATION = Operation.EDIT
    operation: Literal["editImage"] = "editImage"
    images: list[SourceImage] = Field(min_length=1, max_length=16)
    mask: str | None = None


class DallE3Create(ImageGenInput):
    MODEL = Model.DALL_E_3
    OPERATION = Operation.CREATE
    PROMPT_MAX = 4000

    model: Literal["dall-e-3"] = "dall-e-3"
    operation: Literal["createImage"] = "createImage"
    prompt: str = Field(max_length=4000)
    size: Literal["1024x1024", "1792x1024", "1024x1792"]
    style: Literal["natural", "vivid"] = "vivid"
    quality: Literal["auto", "hd", "standard"] = "auto"
    background: Background = "auto"


class DallE2Base(ImageGenInput):
    MODEL = Model.DALL_E_2
    PROMPT_MAX = 1000

    model: Literal["dall-e-2"] = "dall-e-2"
    prompt: str = Field(max_length=1000)
    size: Literal["256x256", "512x512", "1024x1024"]
    quantity: int = Field(1, ge=1, le=10)


class DallE2Create(DallE2Base):
    OPERATION = Operation.CREATE
    operation: Literal["createImage"] = "createImage"
    background: Background = "auto"


class DallE2Edit(DallE2Base):
    OPERATION = Operation.EDIT
    operation: Literal["editImage"] = "editImage"
    image: SourceImage
    mask: str | None = None


INPUT_MODELS: dict[tuple[Model, Operation], type[ImageGenInput]] = {
    (cls.MODEL, cls.OPERATION): cls
    for cls in (
        Gpt2Create,
        Gpt2Edit,
        Gpt15Create,
        Gpt15Edit,
        Gpt1Create,
        Gpt1Edit,
        DallE3Create,
        DallE2Create,
        DallE2Edit,
    )
}


def input_model(model: Model, operation: Operation) -> type[ImageGenInput] | None:
    return INPUT_MODELS.get((model, operation))
