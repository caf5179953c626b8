"""Discord's payload limits for messages, components, modals and autocomplete results.

Violations raise :class:`ApiError` 400 / 50035 "Invalid Form Body" with an ``errors`` tree
like the real API's (``{"components": {"0": {"components": {"_errors": [...]}}}}``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .errors import ApiError, FormErrors, empty_message
from .state import FLAG_IS_COMPONENTS_V2

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_CUSTOM_ID = 100
MAX_ACTION_ROWS = 5
MAX_BUTTONS_PER_ROW = 5
MAX_V2_COMPONENTS = 40
MAX_SELECT_OPTIONS = 25
MAX_AUTOCOMPLETE_CHOICES = 25
MAX_MODAL_TITLE = 45
MAX_MODAL_COMPONENTS = 5
MAX_TEXT_INPUT_LENGTH = 4000

BUTTON = 2
STRING_SELECT = 3
TEXT_INPUT = 4
SELECT_TYPES = {3, 5, 6, 7, 8}
ACTION_ROW = 1
SECTION = 9
TEXT_DISPLAY = 10
THUMBNAIL = 11
MEDIA_GALLERY = 12
FILE = 13
SEPARATOR = 14
CONTAINER = 17
LABEL = 18
FILE_UPLOAD = 19

Path = list[str | int]


def _check_len(
    errors: FormErrors, path: Path, value: Any, high: int, *, low: int = 0, name: str = ""
) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        errors.add(path, "BASE_TYPE_STRING", "Must be a string.")
        return
    if len(value) > high or len(value) < low:
        if low:
            errors.length_between(path, low, high)
        else:
            errors.max_length(path, high)


def validate_message(
    payload: dict[str, Any],
    *,
    file_count: int = 0,
    creating: bool = True,
    existing_has_content: bool = False,
) -> None:
    """Validate a create/edit message body (channel message, webhook or interaction reply)."""
    errors = FormErrors()
    flags = int(payload.get("flags") or 0)
    content = payload.get("content")
    _check_len(errors, ["content"], content, MAX_CONTENT)
    embeds = payload.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        errors.max_length(["embeds"], MAX_EMBEDS)
    else:
        total = 0
        for i, embed in enumerate(embeds):
            total += _validate_embed(errors, ["embeds", i], embed)
        if total > MAX_EMBED_TOTAL:
            errors.add(
                ["embeds"],
                "MAX_EMBED_SIZE_EXCEEDED",
                "Embed size exceeds maximum size of 6000",
            )
    components = payload.get("components")
    v2 = bool(flags & FLAG_IS_COMPONENTS_V2)
    if components:
        validate_components(errors, components, v2=v2)
    if v2 and (content or embeds):
        errors.add(
            ["content" if content else "embeds"],
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The 'content' and 'embeds' fields cannot be used when using "
            "MessageFlags.IS_COMPONENTS_V2",
        )
    attachments = payload.get("attachments")
    if attachments is not None and len(attachments) > 10:
        errors.max_length(["attachments"], 10)
    for i, att in enumerate(attachments or []):
        _check_len(errors, ["attachments", i, "description"], att.get("description"), 1024)
    errors.raise_if_any()
    if creating and not (
        content
        or embeds
        or components
        or file_count
        or payload.get("sticker_ids")
        or payload.get("poll")
        or existing_has_content
    ):
        raise empty_message()


def _validate_embed(errors: FormErrors, path: Path, embed: dict[str, Any]) -> int:
    total = 0
    for key, limit in (("title", 256), ("description", 4096)):
        value = embed.get(key)
        _check_len(errors, [*path, key], value, limit)
        total += len(value or "")
    fields = embed.get("fields") or []
    if len(fields) > 25:
        errors.max_length([*path, "fields"], 25)
    for j, field in enumerate(fields):
        _check_len(errors, [*path, "fields", j, "name"], field.get("name"), 256, low=1)
        _check_len(errors, [*path, "fields", j, "value"], field.get("value"), 1024, low=1)
        total += len(field.get("name") or "") + len(field.get("value") or "")
    footer = embed.get("footer") or {}
    _check_len(errors, [*path, "footer", "text"], footer.get("text"), 2048)
    author = embed.get("author") or {}
    _check_len(errors, [*path, "author", "name"], author.get("name"), 256)
    total += len(footer.get("text") or "") + len(author.get("name") or "")
    return total


def walk_components(components: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component, depth first (rows, sections' accessories, containers, labels)."""
    for comp in components:
        yield comp
        if "components" in comp:
            yield from walk_components(comp["components"])
        if "component" in comp:
            yield from walk_components([comp["component"]])
        if "accessory" in comp:
            yield from walk_components([comp["accessory"]])


def validate_components(
    errors: FormErrors, components: Sequence[dict[str, Any]], *, v2: bool
) -> None:
    if not v2:
        if len(components) > MAX_ACTION_ROWS:
            errors.max_length(["components"], MAX_ACTION_ROWS)
            return
        for i, row in enumerate(components):
            if row.get("type") != ACTION_ROW:
                errors.add(
                    ["components", i, "type"],
                    "UNION_TYPE_CHOICES",
                    'Value of field "type" must be one of (1,).',
                )
                continue
            _validate_row(errors, ["components", i], row)
    else:
        total = sum(1 for _ in walk_components(components))
        if total > MAX_V2_COMPONENTS:
            errors.add(
                ["components"],
                "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED",
                f"Total number of components exceeds maximum ({MAX_V2_COMPONENTS}).",
            )
        for i, comp in enumerate(components):
            _validate_v2(errors, ["components", i], comp)
    seen: set[str] = set()
    for comp in walk_components(components):
        custom_id = comp.get("custom_id")
        if isinstance(custom_id, str):
            if custom_id in seen:
                errors.add(
                    ["components"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)


def _validate_row(errors: FormErrors, path: Path, row: dict[str, Any]) -> None:
    children = row.get("components") or []
    if not children:
        errors.length_between([*path, "components"], 1, 5)
        return
    selects = [c for c in children if c.get("type") in SELECT_TYPES]
    if selects and len(children) > 1:
        errors.max_length([*path, "components"], 1)
    elif len(children) > MAX_BUTTONS_PER_ROW:
        errors.max_length([*path, "components"], MAX_BUTTONS_PER_ROW)
    for j, child in enumerate(children):
        _validate_interactive(errors, [*path, "components", j], child)


def _validate_interactive(errors: FormErrors, path: Path, comp: dict[str, Any]) -> None:
    ctype = comp.get("type")
    if ctype == BUTTON:
        style = comp.get("style")
        _check_len(errors, [*path, "label"], comp.get("label"), 80)
        if style == 5:
            if not comp.get("url"):
                errors.add([*path, "url"], "BASE_TYPE_REQUIRED", "This field is required")
            if comp.get("custom_id") is not None:
                errors.add(
                    [*path, "custom_id"],
                    "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
                    "A custom id is not allowed for link buttons",
                )
        elif style == 6:
            if not comp.get("sku_id"):
                errors.add([*path, "sku_id"], "BASE_TYPE_REQUIRED", "This field is required")
        else:
            if comp.get("custom_id") is None:
                errors.add(
                    [*path, "custom_id"],
                    "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED",
                    "A custom id is required",
                )
            else:
                _check_len(errors, [*path, "custom_id"], comp["custom_id"], MAX_CUSTOM_ID, low=1)
    elif ctype in SELECT_TYPES:
        _check_len(errors, [*path, "custom_id"], comp.get("custom_id"), MAX_CUSTOM_ID, low=1)
        _check_len(errors, [*path, "placeholder"], comp.get("placeholder"), 150)
        min_values = comp.get("min_values", 1)
        max_values = comp.get("max_values", 1)
        if not 0 <= int(min_values) <= 25:
            errors.add([*path, "min_values"], "NUMBER_TYPE_MAX", "int value should be <= 25.")
        if not 1 <= int(max_values) <= 25:
            errors.add([*path, "max_values"], "NUMBER_TYPE_MAX", "int value should be <= 25.")
        if ctype == STRING_SELECT:
            options = comp.get("options") or []
            if not 1 <= len(options) <= MAX_SELECT_OPTIONS:
                errors.length_between([*path, "options"], 1, MAX_SELECT_OPTIONS)
            for k, option in enumerate(options):
                _check_len(errors, [*path, "options", k, "label"], option.get("label"), 100, low=1)
                _check_len(errors, [*path, "options", k, "value"], option.get("value"), 100, low=1)
                _check_len(
                    errors, [*path, "options", k, "description"], option.get("description"), 100
                )
    elif ctype == TEXT_INPUT:
        errors.add(
            [*path, "type"],
            "COMPONENT_TYPE_INVALID",
            "Text inputs can only be used in modals",
        )
    else:
        errors.add([*path, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" is invalid')


def _validate_v2(errors: FormErrors, path: Path, comp: dict[str, Any]) -> None:
    ctype = comp.get("type")
    if ctype == ACTION_ROW:
        _validate_row(errors, path, comp)
    elif ctype == SECTION:
        for j, child in enumerate(comp.get("components") or []):
            if child.get("type") != TEXT_DISPLAY:
                errors.add([*path, "components", j, "type"], "UNION_TYPE_CHOICES", "Invalid type")
        accessory = comp.get("accessory") or {}
        if accessory.get("type") == BUTTON:
            _validate_interactive(errors, [*path, "accessory"], accessory)
    elif ctype == CONTAINER:
        for j, child in enumerate(comp.get("components") or []):
            _validate_v2(errors, [*path, "components", j], child)
    elif ctype == TEXT_DISPLAY:
        _check_len(errors, [*path, "content"], comp.get("content"), 4000, low=1)
    elif ctype in (THUMBNAIL, MEDIA_GALLERY, FILE, SEPARATOR):
        pass
    else:
        errors.add([*path, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" is invalid')


def validate_modal(data: dict[str, Any]) -> None:
    errors = FormErrors()
    _check_len(errors, ["data", "title"], data.get("title"), MAX_MODAL_TITLE, low=1)
    _check_len(errors, ["data", "custom_id"], data.get("custom_id"), MAX_CUSTOM_ID, low=1)
    components = data.get("components") or []
    if not 1 <= len(components) <= MAX_MODAL_COMPONENTS:
        errors.length_between(["data", "components"], 1, MAX_MODAL_COMPONENTS)
    for i, comp in enumerate(components):
        path: Path = ["data", "components", i]
        ctype = comp.get("type")
        if ctype == ACTION_ROW:
            children = comp.get("components") or []
            if len(children) != 1 or children[0].get("type") != TEXT_INPUT:
                errors.add(
                    [*path, "components"],
                    "MODAL_ACTION_ROW_INVALID",
                    "Action rows in modals must hold exactly one text input",
                )
                continue
            _validate_text_input(errors, [*path, "components", 0], children[0], needs_label=True)
        elif ctype == LABEL:
            _check_len(errors, [*path, "label"], comp.get("label"), 45, low=1)
            _check_len(errors, [*path, "description"], comp.get("description"), 100)
            inner = comp.get("component") or {}
            if inner.get("type") == TEXT_INPUT:
                _validate_text_input(errors, [*path, "component"], inner, needs_label=False)
            elif inner.get("type") in SELECT_TYPES:
                _validate_interactive(errors, [*path, "component"], inner)
            elif inner.get("type") == FILE_UPLOAD:
                _check_len(
                    errors, [*path, "component", "custom_id"], inner.get("custom_id"), 100, low=1
                )
            else:
                errors.add([*path, "component", "type"], "UNION_TYPE_CHOICES", "Invalid type")
        elif ctype == TEXT_DISPLAY:
            _check_len(errors, [*path, "content"], comp.get("content"), 4000, low=1)
        else:
            errors.add([*path, "type"], "UNION_TYPE_CHOICES", "Invalid type")
    errors.raise_if_any()


def _validate_text_input(
    errors: FormErrors, path: Path, comp: dict[str, Any], *, needs_label: bool
) -> None:
    _check_len(errors, [*path, "custom_id"], comp.get("custom_id"), MAX_CUSTOM_ID, low=1)
    if comp.get("style") not in (1, 2):
        errors.add([*path, "style"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
    label = comp.get("label")
    if needs_label and not label:
        errors.add([*path, "label"], "BASE_TYPE_REQUIRED", "This field is required")
    _check_len(errors, [*path, "label"], label, 45)
    _check_len(errors, [*path, "placeholder"], comp.get("placeholder"), 100)
    _check_len(errors, [*path, "value"], comp.get("value"), MAX_TEXT_INPUT_LENGTH)
    for key, low in (("min_length", 0), ("max_length", 1)):
        value = comp.get(key)
        if value is not None and not low <= int(value) <= MAX_TEXT_INPUT_LENGTH:
            errors.add(
                [*path, key],
                "NUMBER_TYPE_MAX",
                f"int value should be <= {MAX_TEXT_INPUT_LENGTH}.",
            )


def validate_autocomplete(data: dict[str, Any]) -> None:
    errors = FormErrors()
    choices = data.get("choices")
    if choices is None:
        errors.add(["data", "choices"], "BASE_TYPE_REQUIRED", "This field is required")
    elif len(choices) > MAX_AUTOCOMPLETE_CHOICES:
        errors.max_length(["data", "choices"], MAX_AUTOCOMPLETE_CHOICES)
    else:
        for i, choice in enumerate(choices):
            _check_len(errors, ["data", "choices", i, "name"], choice.get("name"), 100, low=1)
            value = choice.get("value")
            if isinstance(value, str):
                _check_len(errors, ["data", "choices", i, "value"], value, 100, low=1)
    errors.raise_if_any()


def check_flags(payload: dict[str, Any], allowed: int) -> None:
    flags = int(payload.get("flags") or 0)
    if flags & ~allowed:
        raise ApiError(
            400,
            50035,
            "Invalid Form Body",
            {"flags": {"_errors": [{"code": "MESSAGE_FLAGS_INVALID", "message": "Invalid flags"}]}},
        )
