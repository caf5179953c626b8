"""The orchestrator's published OpenAPI document, and validation of submissions against it.

The document nests input types with allOf, each level `additionalProperties: false`, chosen by
discriminators (imageGen input: `engine` → `model` → `operation`). A plain JSON Schema validator
would reject every real request, so the chain is flattened first: properties and required lists
are merged along the path, a later (more specific) level's property replacing an earlier one's,
as the generated schema redefines properties in derived types (gpt-image-1.5 edit's `size` adds
`auto`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_DOC_URI = "urn:civitai-orchestration-v2"
_PREFIX = "#/components/schemas/"


@dataclass(frozen=True)
class SchemaError:
    path: str
    message: str


def _ref_name(ref: str) -> str:
    if not ref.startswith(_PREFIX):
        raise ValueError(f"unsupported $ref {ref}")
    return ref[len(_PREFIX) :]


def _absolutize(node: Any) -> Any:
    """Point local refs at the registered document so nested refs still resolve."""
    if isinstance(node, dict):
        return {
            k: (_DOC_URI + v if k == "$ref" and v.startswith("#/") else _absolutize(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolutize(v) for v in node]
    return node


class OpenApiDocument:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, Any] = document["components"]["schemas"]
        self._registry = Registry().with_resource(
            _DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self._validators: dict[str, Draft202012Validator] = {}
        self._inputs: dict[str, str | None] = {}

    @classmethod
    def load(cls) -> OpenApiDocument:
        """Parse the vendored document (about 1 MB: load once per owner, not per request)."""
        text = resources.files("bot.civitai").joinpath(
            "schema/civitai-orchestration-v2.openapi.json"
        )
        return cls(json.loads(text.read_text(encoding="utf-8")))

    # -- flattening -------------------------------------------------------------------------
    def flatten(self, name: str) -> dict[str, Any]:
        """One closed object schema equal to the allOf chain of `name`, discriminators dropped."""
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for level in self._chain(name):
            merged["properties"].update(copy.deepcopy(level.get("properties", {})))
            for req in level.get("required", []):
                if req not in merged["required"]:
                    merged["required"].append(req)
        merged["additionalProperties"] = False
        return merged

    def _chain(self, name: str) -> list[dict[str, Any]]:
        schema = self.schemas[name]
        if "allOf" not in schema:
            return [schema]
        levels: list[dict[str, Any]] = []
        for part in schema["allOf"]:
            if "$ref" in part:
                levels.extend(self._chain(_ref_name(part["$ref"])))
            else:
                levels.append(part)
        return levels

    def discriminator(self, name: str) -> tuple[str, dict[str, str]] | None:
        """The discriminator declared by `name` itself (its own level), as (property, mapping)."""
        schema = self.schemas[name]
        own = schema["allOf"][-1] if "allOf" in schema else schema
        disc = own.get("discriminator")
        if not disc:
            return None
        return disc["propertyName"], {k: _ref_name(v) for k, v in disc["mapping"].items()}

    def resolve(self, root: str, value: dict[str, Any]) -> tuple[str, list[SchemaError]]:
        """Follow discriminators from `root` to the most specific schema for `value`."""
        name = root
        while (disc := self.discriminator(name)) is not None:
            prop, mapping = disc
            chosen = value.get(prop)
            if chosen not in mapping:
                allowed = ", ".join(mapping)
                return name, [SchemaError(prop, f"{prop} must be one of {allowed}")]
            name = mapping[chosen]
        return name, []

    # -- validation -------------------------------------------------------------------------
    def _validator(self, key: str, schema: Callable[[], dict[str, Any]]) -> Draft202012Validator:
        """A cached validator; `schema` builds the schema only the first time."""
        if key not in self._validators:
            self._validators[key] = Draft202012Validator(
                _absolutize(schema()), registry=self._registry
            )
        return self._validators[key]

    def input_schema(self, step_template: str) -> str | None:
        """The input type a step template names (`ImageUpscalerStepTemplate` → its input)."""
        if step_template not in self._inputs:
            ref = self.flatten(step_template)["properties"].get("input", {}).get("$ref")
            self._inputs[step_template] = _ref_name(ref) if ref else None
        return self._inputs[step_template]

    def validate_input(
        self, step_input: Any, prefix: str = "", root: str = "ImageGenInput"
    ) -> list[SchemaError]:
        """Validate a step's `input` object against `root` (followed down its discriminators);
        paths are relative to `prefix`."""
        if not isinstance(step_input, dict):
            return [SchemaError(prefix.rstrip(".") or "input", "input must be an object")]
        name, errors = self.resolve(root, step_input)
        if errors:
            return [SchemaError(prefix + e.path, e.message) for e in errors]
        validator = self._validator(name, lambda: self.flatten(name))
        return [_explain(err, prefix) for err in validator.iter_errors(step_input)]

    def validate_template(self, template: Any) -> list[SchemaError]:
        """Validate a WorkflowTemplate: the template, each step by its `$type`, and each step's
        input by the input type that step template names."""
        if not isinstance(template, dict):
            return [SchemaError("", "the body must be a JSON object")]

        def outer() -> dict[str, Any]:
            schema = self.flatten("WorkflowTemplate")
            schema["properties"]["steps"] = {"type": "array", "minItems": 1}
            return schema

        errors = [_explain(e) for e in self._validator("template", outer).iter_errors(template)]
        for i, step in enumerate(template.get("steps") or []):
            where = f"steps[{i}]"
            if not isinstance(step, dict):
                errors.append(SchemaError(where, "a step must be an object"))
                continue
            name, disc_errors = self.resolve("WorkflowStepTemplate", step)
            if disc_errors:
                errors += [SchemaError(f"{where}.{e.path}", e.message) for e in disc_errors]
                continue

            def step_schema(name: str = name) -> dict[str, Any]:
                schema = self.flatten(name)
                schema["properties"]["input"] = {"type": "object"}
                return schema

            errors += [
                _explain(e, f"{where}.")
                for e in self._validator(name, step_schema).iter_errors(step)
            ]
            root = self.input_schema(name)
            if root is not None and isinstance(step.get("input"), dict):
                errors += self.validate_input(step["input"], f"{where}.input.", root)
        return errors


def _explain(err: Any, prefix: str = "") -> SchemaError:
    """jsonschema's error in the orchestrator's words ("style is not a valid property")."""
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
    path = (prefix + path.lstrip(".")).rstrip(".")
    field = str(err.absolute_path[-1]) if err.absolute_path else "body"
    kind = err.validator
    if kind == "additionalProperties":
        extras = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        name = extras[0] if extras else "property"
        return SchemaError(f"{path}.{name}".lstrip("."), f"{name} is not a valid property")
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "field"
        return SchemaError(f"{path}.{missing}".lstrip("."), f"{missing} is required")
    if kind == "enum":
        allowed = ", ".join(str(v) for v in err.validator_value)
        return SchemaError(path, f"{field} must be one of {allowed}")
    if kind == "maximum":
        return SchemaError(path, f"{field} must be ≤ {err.validator_value}")
    if kind == "minimum":
        return SchemaError(path, f"{field} must be ≥ {err.validator_value}")
    if kind == "minLength":
        return SchemaError(path, f"{field} too short (at least {err.validator_value} characters)")
    if kind == "maxLength":
        return SchemaError(path, f"{field} too long (at most {err.validator_value} characters)")
    return SchemaError(path, err.message)
