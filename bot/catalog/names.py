"""Model and operation names as the API spells them, and how users may type them."""

from __future__ import annotations

from enum import StrEnum

from bot.catalog.errors import CatalogError


class Model(StrEnum):
    GPT_IMAGE_2 = "gpt-image-2"
    GPT_IMAGE_1_5 = "gpt-image-1.5"
    GPT_IMAGE_1 = "gpt-image-1"
    DALL_E_3 = "dall-e-3"
    DALL_E_2 = "dall-e-2"
    # Served by the OpenAI lane only: the orchestrator has no input model for it, so the
    # Civitai catalog (inputs, capabilities, prices) leaves it out.
    GPT_IMAGE_1_MINI = "gpt-image-1-mini"


class Operation(StrEnum):
    CREATE = "createImage"
    EDIT = "editImage"


MODEL_NAMES: tuple[str, ...] = tuple(m.value for m in Model)

# Discord command names cannot contain dots, so /create gpt-image-1-5 maps back to gpt-image-1.5.
_ALIASES = {"gpt-image-1-5": Model.GPT_IMAGE_1_5}


def parse_model(name: str) -> Model:
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return Model(key)
    except ValueError:
        raise CatalogError.single(
            "model", f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)}"
        ) from None


def parse_operation(name: str) -> Operation:
    key = name.strip().lower()
    if key in ("create", "createimage"):
        return Operation.CREATE
    if key in ("edit", "editimage"):
        return Operation.EDIT
    raise CatalogError.single("operation", "operation must be create or edit")
