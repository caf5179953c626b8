"""Everything the catalog accepts, the orchestrator's OpenAPI document accepts too.

The combinations are generated from the pydantic models' own field metadata (Literal values,
ge/le bounds, list lengths, optional and nullable fields), never from hand-picked lists, so a
field added to the catalog is exercised without touching this file. Each accepted input is turned
into the imageGen step exactly as it would be submitted and validated against the vendored
OpenAPI document. The invalid side is generated the same way: every enum field gets values from
outside its enum, every bounded integer the values just outside its bounds, every input the
fields of the other models; the catalog and the schema must both refuse them.
"""

from __future__ import annotations

import itertools
import json
import types
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from bot.catalog import RequestOptions, build_request
from bot.catalog.inputs import INPUT_MODELS, ImageGenInput
from bot.catalog.names import Model, Operation
from bot.catalog.request import ImageRequest
from bot.catalog.sizes import GPT2_PRESETS
from bot.civitai.schema import OpenApiDocument

ABSENT = object()  # the field is left out of the input altogether
URLS = [f"https://image.civitai.com/source-{i}.png" for i in range(32)]
MASK = "https://image.civitai.com/mask.png"
PROMPT = "a lighthouse on a rocky coast at dusk"

# The schema component of each (model, operation), as DESIGN.md / the guide name them.
SCHEMA_NAMES = {
    (Model.GPT_IMAGE_2, Operation.CREATE): "OpenAIGpt2CreateImageInput",
    (Model.GPT_IMAGE_2, Operation.EDIT): "OpenAIGpt2EditImageInput",
    (Model.GPT_IMAGE_1_5, Operation.CREATE): "OpenAIGpt15CreateImageInput",
    (Model.GPT_IMAGE_1_5, Operation.EDIT): "OpenAIGpt15EditImageInput",
    (Model.GPT_IMAGE_1, Operation.CREATE): "OpenAIGpt1CreateImageInput",
    (Model.GPT_IMAGE_1, Operation.EDIT): "OpenAIGpt1EditImageInput",
    (Model.DALL_E_3, Operation.CREATE): "OpenAIDallE3CreateImageGenInput",
    (Model.DALL_E_2, Operation.CREATE): "OpenAIDallE2CreateImageGenInput",
    (Model.DALL_E_2, Operation.EDIT): "OpenAIDallE2EditImageInput",
}
CLASSES = sorted(INPUT_MODELS.values(), key=lambda c: (c.MODEL.value, c.OPERATION.value))


def _label(cls: type[ImageGenInput]) -> str:
    return f"{cls.MODEL.value}/{cls.OPERATION.value}"


# -- reading the pydantic models' field metadata ---------------------------------------------


def _members(annotation: Any) -> list[Any]:
    """The arms of a union (X | None, Union[...]), or the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def literal_values(info: FieldInfo) -> list[Any]:
    return [
        v for arm in _members(info.annotation) if get_origin(arm) is Literal for v in get_args(arm)
    ]


def nullable(info: FieldInfo) -> bool:
    return type(None) in _members(info.annotation)


def base_type(info: FieldInfo) -> Any:
    arms = [a for a in _members(info.annotation) if a is not type(None)]
    assert len(arms) == 1, f"unexpected union {info.annotation}"
    arm = arms[0]
    return get_origin(arm) or arm


def constraint(info: FieldInfo, name: str) -> Any:
    value = None
    for meta in info.metadata:
        value = getattr(meta, name, value)
    return value


def alias(name: str, info: FieldInfo) -> str:
    return info.alias or name


def value_choices(cls: type[ImageGenInput], name: str, info: FieldInfo) -> list[Any]:
    """Every value worth sending for one field: its enum, its bounds, its list lengths."""
    literals = literal_values(info)
    kind = base_type(info)
    if literals:
        values = list(literals)
    elif kind is list:
        low = constraint(info, "min_length") or 0
        values = [URLS[:n] for n in sorted({low, low + 1})]
    elif kind is int:
        low, high = constraint(info, "ge"), constraint(info, "le")
        assert low is not None and high is not None, f"{cls.__name__}.{name} has no bounds"
        values = [low, high]
    elif kind is str:
        values = [PROMPT if name == "prompt" else MASK if "mask" in name else URLS[0]]
    else:  # a new kind of field: teach the generator about it
        raise AssertionError(f"{cls.__name__}.{name}: no generator for {info.annotation}")
    return values


def choices(cls: type[ImageGenInput], name: str, info: FieldInfo) -> list[Any]:
    values = value_choices(cls, name, info)
    if len(literal_values(info)) == 1:
        return values  # a discriminator: the step always carries it
    if nullable(info):
        values.append(None)
    if not info.is_required():
        values.append(ABSENT)
    return values


def combinations(cls: type[ImageGenInput]) -> Iterator[dict[str, Any]]:
    """The cartesian product of every field's choices, as raw camelCase input objects."""
    names = list(cls.model_fields)
    columns = [choices(cls, n, cls.model_fields[n]) for n in names]
    keys = [alias(n, cls.model_fields[n]) for n in names]
    for row in itertools.product(*columns):
        yield {k: v for k, v in zip(keys, row, strict=True) if v is not ABSENT}


def minimal(cls: type[ImageGenInput]) -> dict[str, Any]:
    """The smallest valid raw input: discriminators plus the first value of each required field."""
    raw = {}
    for name, info in cls.model_fields.items():
        if info.is_required() or len(literal_values(info)) == 1:
            raw[alias(name, info)] = value_choices(cls, name, info)[0]
    cls.model_validate(raw)
    return raw


def step_of(inp: ImageGenInput) -> dict[str, Any]:
    return ImageRequest(inp, 0).step()


class SchemaCheck:
    """validate_input with a cache keyed by the step's JSON (None fields drop out of steps)."""

    def __init__(self, openapi: OpenApiDocument) -> None:
        self.openapi = openapi
        self.seen: dict[str, list[Any]] = {}

    def errors(self, step_input: dict[str, Any]) -> list[Any]:
        key = json.dumps(step_input, sort_keys=True)
        if key not in self.seen:
            self.seen[key] = self.openapi.validate_input(step_input)
        return self.seen[key]


# -- the catalog's fields are the schema's fields ------------------------------------------


def test_every_catalog_pair_has_a_schema_and_the_generator_covers_them() -> None:
    assert set(INPUT_MODELS) == set(SCHEMA_NAMES)
    assert len(CLASSES) == 9


@pytest.mark.parametrize("cls", CLASSES, ids=_label)
def test_catalog_fields_mirror_the_schema(
    openapi: OpenApiDocument, cls: type[ImageGenInput]
) -> None:
    schema = openapi.flatten(SCHEMA_NAMES[(cls.MODEL, cls.OPERATION)])
    props = schema["properties"]
    fields = {alias(n, i): i for n, i in cls.model_fields.items()}
    assert set(fields) == set(props)
    discriminators = {"engine", "model", "operation"}
    required = {a for a, i in fields.items() if i.is_required()}
    assert required == set(schema["required"]) - discriminators
    for name, info in fields.items():
        prop = props[name]
        if "$ref" in prop:
            prop = openapi.schemas[prop["$ref"].rsplit("/", 1)[1]]
        if "enum" in prop:
            assert sorted(literal_values(info)) == sorted(prop["enum"]), name
        if "maximum" in prop:  # the catalog may be stricter than the schema, never looser
            assert constraint(info, "le") == prop["maximum"], name
            assert constraint(info, "ge") == prop["minimum"], name
        if "maxLength" in prop:
            assert constraint(info, "max_length") == prop["maxLength"], name
        if "default" in prop and name not in discriminators:
            assert info.default == prop["default"], name
        if nullable(info) and "null" not in prop.get("type", []):
            # The catalog allows None where the schema does not: the step must drop it.
            raw = {**minimal(cls), name: None}
            assert name not in step_of(cls.model_validate(raw))["input"], name


# -- everything the catalog accepts is valid ----------------------------------------------------


def test_every_accepted_input_combination_is_valid_against_the_schema(
    openapi: OpenApiDocument,
) -> None:
    check = SchemaCheck(openapi)
    accepted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    failures: list[str] = []
    for cls in CLASSES:
        for raw in combinations(cls):
            try:
                inp = cls.model_validate(raw)
            except ValidationError as exc:
                refused.update(e["type"] for e in exc.errors())
                continue
            accepted[_label(cls)] += 1
            step = step_of(inp)
            assert step["$type"] == "imageGen"
            if errors := check.errors(step["input"]):
                failures.append(f"{json.dumps(step['input'])}: {errors}")
    assert not failures, f"{len(failures)} accepted inputs the schema refuses:\n" + "\n".join(
        failures[:5]
    )
    # Every pair was exercised, and thoroughly.
    assert set(accepted) == {_label(c) for c in CLASSES}
    assert min(accepted.values()) >= 100, accepted
    assert sum(accepted.values()) > 5_000, accepted
    assert len(check.seen) > 5_000
    # Only the rules across fields refuse in-range values: width without height on a gpt-image-2
    # edit, and a transparent background with jpeg.
    assert set(refused) == {"size_pair", "transparent_format"}, refused


def test_whole_templates_are_valid(openapi: OpenApiDocument) -> None:
    # The full WorkflowTemplate path (step discriminator, template fields) for a sample per pair.
    for cls in CLASSES:
        for i, raw in enumerate(combinations(cls)):
            if i % 97:
                continue
            try:
                inp = cls.model_validate(raw)
            except ValidationError:
                continue
            template = {"steps": [step_of(inp)], "currencies": [], "externalId": f"job-{i}"}
            assert openapi.validate_template(template) == [], raw


@pytest.mark.parametrize("cls", CLASSES, ids=_label)
def test_prompt_at_the_cap_is_valid(openapi: OpenApiDocument, cls: type[ImageGenInput]) -> None:
    cap = constraint(cls.model_fields["prompt"], "max_length")
    assert cap == cls.PROMPT_MAX
    raw = {**minimal(cls), "prompt": "p" * cap}
    assert openapi.validate_input(step_of(cls.model_validate(raw))["input"]) == []


@pytest.mark.parametrize("cls", CLASSES, ids=_label)
def test_source_lists_at_their_maximum_are_valid(
    openapi: OpenApiDocument, cls: type[ImageGenInput]
) -> None:
    lists = [(n, i) for n, i in cls.model_fields.items() if base_type(i) is list]
    for name, info in lists:
        high = constraint(info, "max_length")
        raw = {**minimal(cls), alias(name, info): URLS[:high]}
        assert openapi.validate_input(step_of(cls.model_validate(raw))["input"]) == []


# -- every choice a member can make -----------------------------------------------------------

FORMAT_FIELD = "output_format"
MEMBER_OPTIONS = {  # RequestOptions name → input field
    "size": "size",
    "quality": "quality",
    "background": "background",
    "style": "style",
    "fidelity": "input_fidelity",
    "format": FORMAT_FIELD,
}
# Which options each command offers (DESIGN.md "Discord surface"); the values come from the models.
SURFACE = {
    (Model.GPT_IMAGE_2, Operation.CREATE): {"size", "quality", "quantity", "format"},
    (Model.GPT_IMAGE_1_5, Operation.CREATE): {
        "size",
        "quality",
        "quantity",
        "background",
        "format",
    },
    (Model.GPT_IMAGE_1, Operation.CREATE): {"size", "quality", "quantity", "background", "format"},
    (Model.DALL_E_3, Operation.CREATE): {"size", "style", "quality", "format"},
    (Model.DALL_E_2, Operation.CREATE): {"size", "quantity", "format"},
    (Model.GPT_IMAGE_2, Operation.EDIT): {"mask", "size", "quality", "quantity", "format"},
    (Model.GPT_IMAGE_1_5, Operation.EDIT): {
        *("size", "quality", "quantity", "background", "fidelity", "format"),
    },
    (Model.GPT_IMAGE_1, Operation.EDIT): {
        *("mask", "size", "quality", "quantity", "background", "format"),
    },
    (Model.DALL_E_2, Operation.EDIT): {"mask", "size", "quantity", "format"},
}


def member_choices(cls: type[ImageGenInput]) -> dict[str, list[Any]]:
    fields = cls.model_fields
    offered = SURFACE[(cls.MODEL, cls.OPERATION)]
    out: dict[str, list[Any]] = {}
    for option, field_name in MEMBER_OPTIONS.items():
        if option in offered and not (option == "size" and cls.MODEL is Model.GPT_IMAGE_2):
            assert field_name in fields, (cls.__name__, option)
            values = [str(v) for v in literal_values(fields[field_name])]
            if field_name == FORMAT_FIELD:
                values = [v.lower() for v in values]  # members type webp, the API says webP
            out[option] = [*values, None]
    if cls.MODEL is Model.GPT_IMAGE_2:
        out["size"] = [p.size for p in GPT2_PRESETS] + [None]
        if cls.OPERATION is Operation.EDIT:
            out["size"].append("auto")
    if "quantity" in offered:
        info = fields["quantity"]
        out["quantity"] = [constraint(info, "ge"), constraint(info, "le"), None]
    if cls.OPERATION is Operation.EDIT:
        many = "images" in fields
        out["images"] = [tuple(URLS[:1]), tuple(URLS[:2])] if many else [tuple(URLS[:1])]
    if "mask" in offered:
        assert {"mask", "mask_image"} & set(fields), cls.__name__
        out["mask"] = [MASK, None]
    return out


def test_every_member_choice_builds_a_valid_step(openapi: OpenApiDocument) -> None:
    check = SchemaCheck(openapi)
    built: Counter[str] = Counter()
    refused: list[dict[str, Any]] = []
    for cls in CLASSES:
        options = member_choices(cls)
        keys = list(options)
        input_size = (1536, 1024) if cls.MODEL is Model.GPT_IMAGE_2 else None
        for row in itertools.product(*(options[k] for k in keys)):
            given = dict(zip(keys, row, strict=True))
            try:
                request = build_request(
                    cls.MODEL,
                    cls.OPERATION,
                    RequestOptions(prompt=PROMPT, **given),
                    input_size=input_size,
                )
            except Exception:
                refused.append({"pair": _label(cls), **given})
                continue
            built[_label(cls)] += 1
            assert type(request.buzz) is int and request.buzz > 0
            assert isinstance(request.input, cls)
            assert check.errors(request.step()["input"]) == [], given
    assert set(built) == {_label(c) for c in CLASSES}
    assert sum(built.values()) > 5_000, built
    # The one combination a member can pick and the catalog refuses: transparent with jpeg.
    assert refused, "transparent + jpeg must be refused"
    assert all(r["background"] == "transparent" and r["format"] == "jpeg" for r in refused)


@pytest.mark.parametrize("preset", GPT2_PRESETS, ids=lambda p: p.name)
def test_gpt2_presets_are_valid_sizes(openapi: OpenApiDocument, preset: Any) -> None:
    request = build_request(
        Model.GPT_IMAGE_2, Operation.CREATE, RequestOptions(prompt=PROMPT, size=preset.size)
    )
    inp = request.step()["input"]
    assert (inp["width"], inp["height"]) == (preset.width, preset.height)
    assert openapi.validate_input(inp) == []
    assert request.warnings == ()  # every preset is inside OpenAI's documented limits too


# -- what the catalog refuses, the schema refuses ------------------------------------------


def _schema_refuses(openapi: OpenApiDocument, raw: dict[str, Any]) -> bool:
    return bool(openapi.validate_input(raw))


def _catalog_refuses(cls: type[ImageGenInput], raw: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        cls.model_validate(raw)
    except ValidationError as exc:
        return exc.errors()
    return []


def out_of_enum_cases() -> Iterator[tuple[type[ImageGenInput], str, Any]]:
    """For each enum field: made-up values, case-mangled values and other models' values."""
    by_alias: dict[str, set[Any]] = {}
    for cls in CLASSES:
        for name, info in cls.model_fields.items():
            by_alias.setdefault(alias(name, info), set()).update(literal_values(info))
    for cls in CLASSES:
        for name, info in cls.model_fields.items():
            allowed = literal_values(info)
            if not allowed:
                continue
            key = alias(name, info)
            bad: set[Any] = {"bogus", "", 1}
            for value in allowed:
                bad |= {str(value).upper(), str(value).lower(), f" {value}"}
            if len(allowed) > 1:  # a discriminator's other values pick another schema
                bad |= by_alias[key]
            for value in sorted(bad - set(allowed), key=str):
                yield cls, key, value


def test_out_of_enum_values_refused_by_catalog_and_schema(openapi: OpenApiDocument) -> None:
    cases = list(out_of_enum_cases())
    assert len(cases) > 150
    fields_seen = set()
    for cls, key, value in cases:
        raw = {**minimal(cls), key: value}
        assert _catalog_refuses(cls, raw), (cls.__name__, key, value)
        assert _schema_refuses(openapi, raw), (cls.__name__, key, value)
        fields_seen.add((cls.__name__, key))
    for key in ("quality", "size", "background", "style", "inputFidelity", "outputFormat"):
        assert any(k == key for _, k in fields_seen), key
    # The usual mistakes are among them.
    assert (
        any(k == "outputFormat" and v == "webp" for _, k, v in cases)
        and any(c.MODEL is Model.DALL_E_3 and k == "size" and v == "1536x1024" for c, k, v in cases)
        and any(
            c.MODEL is Model.GPT_IMAGE_1_5 and k == "quality" and v == "auto" for c, k, v in cases
        )
    )


def test_ints_just_outside_their_bounds_refused(openapi: OpenApiDocument) -> None:
    catalog_only = set()
    checked = 0
    for cls in CLASSES:
        schema = openapi.flatten(SCHEMA_NAMES[(cls.MODEL, cls.OPERATION)])
        for name, info in cls.model_fields.items():
            if base_type(info) is not int:
                continue
            key = alias(name, info)
            low, high = constraint(info, "ge"), constraint(info, "le")
            for value, kind in ((low - 1, "greater_than_equal"), (high + 1, "less_than_equal")):
                raw = {**minimal(cls), key: value}
                if key in ("width", "height"):
                    raw = {**raw, "width": 1024, "height": 1024, key: value}
                errors = _catalog_refuses(cls, raw)
                assert [(e["type"], e["loc"]) for e in errors] == [(kind, (key,))], raw
                checked += 1
                if "maximum" in schema["properties"][key]:
                    assert _schema_refuses(openapi, raw), raw
                else:
                    assert not _schema_refuses(openapi, raw)
                    catalog_only.add((_label(cls), key))
    assert checked >= 2 * 10  # quantity on 8 pairs, width and height on 2
    # The schema leaves gpt-image-2 edit sizes unbounded; the catalog holds them to 256–3840 as
    # the guide does (and the simulator refuses them with a 400 too).
    assert catalog_only == {("gpt-image-2/editImage", "width"), ("gpt-image-2/editImage", "height")}


def borrowed_field_cases() -> Iterator[tuple[type[ImageGenInput], str, Any]]:
    """Each input gets, one at a time, every field another model has and it lacks."""
    donors: dict[str, Any] = {}
    for cls in CLASSES:
        for name, info in cls.model_fields.items():
            donors.setdefault(alias(name, info), value_choices(cls, name, info)[0])
    for cls in CLASSES:
        own = {alias(n, i) for n, i in cls.model_fields.items()}
        for key in sorted(set(donors) - own):
            yield cls, key, donors[key]


def test_fields_borrowed_from_other_models_refused(openapi: OpenApiDocument) -> None:
    cases = list(borrowed_field_cases())
    pairs = {(c.MODEL, c.OPERATION, k) for c, k, _ in cases}
    for named in [
        (Model.GPT_IMAGE_1, Operation.CREATE, "style"),
        (Model.GPT_IMAGE_1_5, Operation.EDIT, "mask"),
        (Model.DALL_E_3, Operation.CREATE, "quantity"),
        (Model.GPT_IMAGE_2, Operation.CREATE, "inputFidelity"),
        (Model.GPT_IMAGE_1, Operation.CREATE, "inputFidelity"),
        (Model.GPT_IMAGE_2, Operation.CREATE, "background"),
        (Model.DALL_E_2, Operation.EDIT, "images"),
    ]:
        assert named in pairs, named
    assert len(cases) > 40
    for cls, key, value in cases:
        raw = {**minimal(cls), key: value}
        errors = _catalog_refuses(cls, raw)
        assert [(e["type"], e["loc"]) for e in errors] == [("extra_forbidden", (key,))], raw
        schema_errors = openapi.validate_input(raw)
        assert any(e.message == f"{key} is not a valid property" for e in schema_errors), raw


@pytest.mark.parametrize("cls", CLASSES, ids=_label)
def test_prompt_one_over_the_cap_refused(
    openapi: OpenApiDocument, cls: type[ImageGenInput]
) -> None:
    raw = {**minimal(cls), "prompt": "p" * (cls.PROMPT_MAX + 1)}
    assert [e["type"] for e in _catalog_refuses(cls, raw)] == ["string_too_long"]
    assert [e.path for e in openapi.validate_input(raw)] == ["prompt"]


def test_dalle3_edit_refused_by_catalog_and_schema(openapi: OpenApiDocument) -> None:
    from bot.catalog.inputs import DallE3Create, input_model

    assert input_model(Model.DALL_E_3, Operation.EDIT) is None
    raw = {**minimal(DallE3Create), "operation": "editImage", "images": URLS[:1]}
    assert _catalog_refuses(DallE3Create, raw)
    errors = openapi.validate_input(raw)
    assert errors and errors[0].path == "operation"
    assert "createImage" in errors[0].message


def test_gpt2_multiple_of_16_is_a_catalog_rule_the_schema_lacks(openapi: OpenApiDocument) -> None:
    # The guide's rule: the catalog refuses it; the schema alone would let it through (the
    # simulator adds the rule, see tests/civitai/test_simulator.py).
    from bot.catalog.inputs import Gpt2Create

    raw = {**minimal(Gpt2Create), "width": 1000, "height": 1024}
    assert [e["type"] for e in _catalog_refuses(Gpt2Create, raw)] == ["multiple_of_16"]
    assert openapi.validate_input(raw) == []
