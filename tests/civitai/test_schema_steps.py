"""The OpenAPI document's step inputs: every step type names one, and templates are held to it."""

from __future__ import annotations

from bot.civitai.schema import OpenApiDocument


def test_every_step_template_names_an_input_the_document_defines(openapi: OpenApiDocument) -> None:
    disc = openapi.discriminator("WorkflowStepTemplate")
    assert disc is not None
    _, mapping = disc
    inputs = {step: openapi.input_schema(name) for step, name in mapping.items()}
    assert inputs["imageUpscaler"] == "ImageUpscalerInput"
    assert inputs["xGuardModeration"] == "XGuardModerationInput"
    assert all(name is None or name in openapi.schemas for name in inputs.values())


def test_inputs_are_validated_down_their_discriminators(openapi: OpenApiDocument) -> None:
    def template(inp: dict) -> dict:
        return {"steps": [{"$type": "xGuardModeration", "input": inp}], "currencies": []}

    base = {"includeReasoning": False, "storeFullResponse": False}
    text = template({**base, "mode": "text", "text": "hello"})
    prompt_fields_in_text_mode = template({**base, "mode": "text", "positivePrompt": "hello"})
    assert openapi.validate_template(text) == []
    paths = {e.path for e in openapi.validate_template(prompt_fields_in_text_mode)}
    assert paths == {"steps[0].input.positivePrompt", "steps[0].input.text"}


def test_a_step_type_without_a_simulator_is_still_held_to_its_schema(
    openapi: OpenApiDocument,
) -> None:
    step = {"$type": "convertImage", "input": {"image": "x", "nonsense": 1}}
    errors = openapi.validate_template({"steps": [step], "currencies": []})
    assert "steps[0].input.nonsense" in {e.path for e in errors}
