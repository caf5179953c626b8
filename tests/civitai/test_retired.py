"""How the lane recognises the orchestrator saying a model is gone."""

from __future__ import annotations

from bot.civitai.errors import ValidationFailed
from bot.civitai.models import Workflow
from bot.civitai.retired import refused_as_gone, unsupported

STEP = {"$type": "imageGen", "input": {"engine": "openai", "model": "dall-e-2", "prompt": "x"}}


def test_a_refusal_of_the_model_field_that_says_it_is_gone():
    exc = ValidationFailed("invalid", {"steps[0].input.model": ["dall-e-2 has been retired"]})
    assert refused_as_gone(STEP, exc)


def test_a_refusal_that_names_the_model_in_its_detail():
    exc = ValidationFailed("The model dall-e-2 is no longer available.", {})
    assert refused_as_gone(STEP, exc)


def test_other_refusals_are_not_a_retirement():
    assert not refused_as_gone(
        STEP, ValidationFailed("invalid", {"steps[0].input.size": ["size must be one of ..."]})
    )
    assert not refused_as_gone(
        STEP, ValidationFailed("invalid", {"steps[0].input.model": ["model is required"]})
    )
    assert not refused_as_gone(STEP, ValidationFailed("gpt-image-2 is unavailable", {}))


def test_a_job_no_worker_supports():
    def workflow(support: str) -> Workflow:
        job = {"id": "j", "status": "scheduled", "queuePosition": {"support": support}}
        return Workflow.model_validate({"status": "scheduled", "steps": [{"jobs": [job]}]})

    assert unsupported(workflow("unsupported"))
    assert not unsupported(workflow("available"))
    assert not unsupported(workflow("unavailable"))  # temporarily: it may still run
