"""Refusals a member reads: each names the option and says what is allowed for that model."""

from __future__ import annotations

import re

import pytest

from bot.catalog import CatalogError, RequestOptions, build_request, parse_model
from bot.catalog.names import MODEL_NAMES, Model, Operation, parse_operation
from bot.catalog.request import ImageRequest

G2, G15, G1, D3, D2 = (
    Model.GPT_IMAGE_2,
    Model.GPT_IMAGE_1_5,
    Model.GPT_IMAGE_1,
    Model.DALL_E_3,
    Model.DALL_E_2,
)
CREATE, EDIT = Operation.CREATE, Operation.EDIT
SOURCE = "https://image.civitai.com/source.png"


def build(
    model: Model,
    operation: Operation = CREATE,
    input_size: tuple[int, int] | None = None,
    **options: object,
) -> ImageRequest:
    if operation is EDIT:
        options.setdefault("images", (SOURCE,))
    opts = RequestOptions(prompt=str(options.pop("prompt", "a cat")), **options)  # type: ignore[arg-type]
    return build_request(model, operation, opts, input_size=input_size)


def refusal(model: Model, operation: Operation = CREATE, **options: object) -> dict[str, str]:
    """{field: message} of a request that must be refused."""
    with pytest.raises(CatalogError) as caught:
        build(model, operation, **options)  # type: ignore[arg-type]
    errors = caught.value.errors
    assert errors, "a CatalogError must carry at least one FieldError"
    fields = [e.field for e in errors]
    assert len(fields) == len(set(fields)), f"one message per option, got {fields}"
    return {e.field: e.message for e in errors}


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        (G15, "1792x1024", "size must be one of 1024x1024, 1536x1024, 1024x1536 for gpt-image-1.5"),
        (G1, "512x512", "size must be one of 1024x1024, 1536x1024, 1024x1536 for gpt-image-1"),
        (D3, "1536x1024", "size must be one of 1024x1024, 1792x1024, 1024x1792 for dall-e-3"),
        (D2, "1024x768", "size must be one of 256x256, 512x512, 1024x1024 for dall-e-2"),
    ],
)
def test_fixed_size_models_list_their_sizes(model: Model, size: str, expected: str) -> None:
    assert refusal(model, size=size) == {"size": expected}


def test_gpt15_edit_size_also_allows_auto() -> None:
    message = refusal(G15, EDIT, size="2048x2048")["size"]
    assert (
        message
        == "size must be one of auto, 1024x1024, 1536x1024, 1024x1536 for gpt-image-1.5 edits"
    )
    assert build(G15, EDIT, size="auto").step()["input"]["size"] == "auto"
    # …but not for creates.
    assert refusal(G15, size="auto") == {
        "size": "size must be one of 1024x1024, 1536x1024, 1024x1536 for gpt-image-1.5"
    }


def _suggestions(message: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"(\d+x\d+) \((\d+) Buzz\)", message)}


def test_gpt2_1920x1080_suggests_nearest_valid_sizes_with_prices() -> None:
    message = refusal(G2, size="1920x1080", quality="high")["size"]
    assert "multiple of 16" in message
    assert "1920x1080" in message
    offers = _suggestions(message)
    assert offers == {"1920x1072": 208, "1920x1088": 299}
    assert offers["1920x1072"] < offers["1920x1088"]
    # The suggestions are themselves accepted, at the quoted prices.
    for size, price in offers.items():
        assert build(G2, size=size, quality="high").buzz == price


def test_gpt2_suggestion_prices_follow_quality_and_quantity() -> None:
    message = refusal(G2, size="1920x1080", quality="medium", quantity=3)["size"]
    assert _suggestions(message) == {"1920x1072": 3 * 52, "1920x1088": 3 * 78}


def test_gpt2_1000x1000_suggests_neighbours_on_the_16_grid() -> None:
    message = refusal(G2, size="1000x1000")["size"]
    assert "multiple of 16" in message
    offers = _suggestions(message)
    assert offers, message
    for size, price in offers.items():
        w, h = (int(v) for v in size.split("x"))
        assert w % 16 == 0 and h % 16 == 0
        assert abs(w - 1000) < 16 and abs(h - 1000) < 16
        assert build(G2, size=size).buzz == price


@pytest.mark.parametrize("size", ["4096x1024", "240x1024", "1024x3856"])
def test_gpt2_sides_outside_256_3840_are_refused(size: str) -> None:
    message = refusal(G2, size=size)["size"]
    assert "between 256 and 3840" in message


@pytest.mark.parametrize("size", ["big", "1024", "1024x", "x1024", "1024x1024x2"])
def test_gpt2_size_must_be_width_x_height(size: str) -> None:
    assert "WIDTHxHEIGHT" in refusal(G2, size=size)["size"]


@pytest.mark.parametrize("size", ["1920 x 1072", "1920×1072", "1920X1072", " 1920*1072 "])
def test_gpt2_size_spellings_are_accepted(size: str) -> None:
    step = build(G2, size=size).step()["input"]
    assert (step["width"], step["height"]) == (1920, 1072)


def test_gpt2_edit_size_is_both_or_auto() -> None:
    step = build(G2, EDIT, size="1536x1024").step()["input"]
    assert (step["width"], step["height"]) == (1536, 1024)
    auto = build(G2, EDIT, size="auto", input_size=(1024, 1024)).step()["input"]
    assert "width" not in auto and "height" not in auto


# -- gpt-image-2 upstream limits: warnings, not errors ----------------------------------------


@pytest.mark.parametrize(
    ("size", "words"),
    [
        ("3840x1024", ["3:1"]),  # 3.75:1
        ("1024x624", ["655,360"]),  # 638 976 px
        ("3840x2176", ["8,294,400"]),  # 8 355 840 px
        ("1024x256", ["3:1", "655,360"]),  # 4:1 and 262 144 px
    ],
)
def test_gpt2_upstream_limits_warn(size: str, words: list[str]) -> None:
    request = build(G2, size=size)
    assert request.buzz > 0
    assert len(request.warnings) == len(words)
    for word in words:
        assert sum(word in warning for warning in request.warnings) == 1, request.warnings
    assert all("gpt-image-2" in warning for warning in request.warnings)


@pytest.mark.parametrize("size", ["3072x1024", "1024x640", "3840x2160", "1024x1024"])
def test_gpt2_at_the_upstream_limits_does_not_warn(size: str) -> None:
    # 3:1 exactly, 655 360 px exactly, 8 294 400 px exactly, an ordinary square.
    assert build(G2, size=size).warnings == ()


def test_models_other_than_gpt2_never_warn_about_pixels() -> None:
    assert build(D2, size="256x256").warnings == ()


# -- quantity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "operation", "low", "high", "where"),
    [
        (G2, CREATE, 1, 4, "gpt-image-2"),
        (G2, EDIT, 1, 4, "gpt-image-2 edits"),
        (G15, CREATE, 1, 4, "gpt-image-1.5"),
        (G15, EDIT, 1, 4, "gpt-image-1.5 edits"),
        (G1, CREATE, 1, 10, "gpt-image-1"),
        (G1, EDIT, 1, 10, "gpt-image-1 edits"),
        (D2, CREATE, 1, 10, "dall-e-2"),
        (D2, EDIT, 1, 10, "dall-e-2 edits"),
    ],
)
def test_quantity_range_per_model(
    model: Model, operation: Operation, low: int, high: int, where: str
) -> None:
    extra = {"input_size": (1024, 1024)} if operation is EDIT else {}
    for ok in (low, high):
        assert build(model, operation, quantity=ok, **extra).quantity == ok  # type: ignore[arg-type]
    expected = f"quantity must be between {low} and {high} for {where}"
    for bad in (low - 1, high + 1):
        assert refusal(model, operation, quantity=bad, **extra) == {"quantity": expected}


def test_dalle3_takes_no_quantity() -> None:
    assert refusal(D3, quantity=2) == {"quantity": "dall-e-3 makes one image per request"}
    assert "quantity" not in build(D3).step()["input"]


# -- prompt -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "cap"), [(G2, 32000), (G15, 32000), (G1, 32000), (D3, 4000), (D2, 1000)]
)
def test_prompt_caps(model: Model, cap: int) -> None:
    assert build(model, prompt="p" * cap).step()["input"]["prompt"] == "p" * cap
    message = refusal(model, prompt="p" * (cap + 1))["prompt"]
    assert f"{cap + 1:,} characters" in message
    assert f"at most {cap:,}" in message
    assert model.value in message


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "   ",
        "\n\t",
        "\u200b\u200b",  # zero-width spaces
        "\u2800\u2800\u2800",  # braille blank
        "\u3164",  # Hangul filler
        " \u200d\ufeff\u2060 ",  # joiner, BOM, word joiner
        "\u0301\u0308",  # combining marks with nothing to mark
    ],
)
def test_a_prompt_without_visible_text_is_refused(prompt: str) -> None:
    assert refusal(G2, prompt=prompt) == {
        "prompt": "prompt has no visible text: it is empty, or only spaces and invisible characters"
    }


@pytest.mark.parametrize("prompt", ["a", "\u200bcat\u200b", "é", "猫", "🦊", "\u2800 x"])
def test_any_visible_character_is_a_prompt(prompt: str) -> None:
    assert build(G2, prompt=prompt).step()["input"]["prompt"] == prompt


# -- options a model does not have --------------------------------------------------------


def test_mask_on_gpt15_edit_points_to_the_models_that_take_masks() -> None:
    message = refusal(G15, EDIT, mask="attachment://mask.png")["mask"]
    assert "gpt-image-1.5" in message
    assert "gpt-image-2" in message and "gpt-image-1 " in message + " "


def test_mask_on_a_create_is_refused() -> None:
    assert refusal(G2, mask="m") == {"mask": "a mask is only used when editing an image"}


@pytest.mark.parametrize(("model", "field"), [(G2, "maskImage"), (G1, "mask"), (D2, "mask")])
def test_mask_goes_to_the_models_own_field(model: Model, field: str) -> None:
    step = build(model, EDIT, mask="attachment://mask.png", input_size=(1024, 1024)).step()
    assert step["input"][field] == "attachment://mask.png"


@pytest.mark.parametrize("model", [G2, G15, G1, D2])
def test_style_outside_dalle3_is_refused(model: Model) -> None:
    assert refusal(model, style="vivid") == {"style": "style is only available for dall-e-3"}


@pytest.mark.parametrize(
    ("style", "ok"), [("natural", True), ("vivid", True), ("Natural", True), ("anime", False)]
)
def test_dalle3_style_values(style: str, ok: bool) -> None:
    if ok:
        assert build(D3, style=style).step()["input"]["style"] == style.lower()
    else:
        assert refusal(D3, style=style) == {
            "style": "style must be one of natural, vivid for dall-e-3"
        }


@pytest.mark.parametrize("model", [G2, D3, D2])
def test_background_only_for_gpt15_and_gpt1(model: Model) -> None:
    assert refusal(model, background="opaque") == {
        "background": "background is only available for gpt-image-1.5 and gpt-image-1"
    }


@pytest.mark.parametrize(("model", "operation"), [(G15, CREATE), (G2, EDIT), (G1, EDIT)])
def test_fidelity_only_for_gpt15_edits(model: Model, operation: Operation) -> None:
    assert refusal(model, operation, fidelity="high", size="1024x1024") == {
        "fidelity": "fidelity is only available for gpt-image-1.5 edits"
    }


def test_gpt15_fidelity_values() -> None:
    assert build(G15, EDIT, fidelity="low").step()["input"]["inputFidelity"] == "low"
    assert refusal(G15, EDIT, fidelity="medium") == {
        "fidelity": "fidelity must be one of low, high for gpt-image-1.5 edits"
    }


def test_dalle2_has_no_quality() -> None:
    assert refusal(D2, quality="hd") == {"quality": "dall-e-2 has no quality option"}


@pytest.mark.parametrize(
    ("model", "allowed"),
    [
        (G2, "low, medium, high"),
        (G15, "low, medium, high"),
        (G1, "auto, high, medium, low"),
        (D3, "auto, hd, standard"),
    ],
)
def test_quality_lists_the_models_values(model: Model, allowed: str) -> None:
    assert refusal(model, quality="ultra") == {
        "quality": f"quality must be one of {allowed} for {model.value}"
    }


def test_dalle3_edit_refused() -> None:
    with pytest.raises(CatalogError) as caught:
        build(D3, EDIT)
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("operation", "dall-e-3 cannot edit images: it only creates them")
    ]


# -- sources ---------------------------------------------------------------------------------


def test_edit_needs_a_source_image() -> None:
    assert refusal(G1, EDIT, images=()) == {"image": "gpt-image-1 edits need a source image"}


def test_create_takes_no_source_image() -> None:
    assert refusal(G1, images=(SOURCE,)) == {"image": "source images are only used when editing"}


def test_dalle2_edits_take_exactly_one_image() -> None:
    assert refusal(D2, EDIT, images=(SOURCE, SOURCE)) == {
        "image": "dall-e-2 edits take exactly one source image"
    }
    assert build(D2, EDIT).step()["input"]["image"] == SOURCE


def test_gpt_edits_take_several_images_up_to_16() -> None:
    assert build(G1, EDIT, images=(SOURCE,) * 16).step()["input"]["images"] == [SOURCE] * 16
    assert refusal(G1, EDIT, images=(SOURCE,) * 17) == {
        "image": "at most 16 source images for gpt-image-1 edits"
    }


# -- format and transparency ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "sent"), [("jpeg", "jpeg"), ("jpg", "jpeg"), ("png", "png"), ("webp", "webP")]
)
def test_format_spellings(given: str, sent: str) -> None:
    assert build(G2, format=given).step()["input"]["outputFormat"] == sent


def test_unknown_format_lists_the_three() -> None:
    assert refusal(G2, format="gif") == {"format": "format must be one of jpeg, png, webp"}


@pytest.mark.parametrize("model", [G15, G1])
def test_transparent_with_jpeg_refused(model: Model) -> None:
    assert refusal(model, background="transparent", format="jpeg") == {
        "background": "a transparent background needs format png or webp, not jpeg"
    }


@pytest.mark.parametrize("model", [G15, G1])
@pytest.mark.parametrize("operation", [CREATE, EDIT])
def test_transparent_without_format_chooses_png(model: Model, operation: Operation) -> None:
    step = build(model, operation, background="transparent").step()["input"]
    assert step["background"] == "transparent"
    assert step["outputFormat"] == "png"


def test_transparent_keeps_webp() -> None:
    step = build(G1, background="transparent", format="webp").step()["input"]
    assert step["outputFormat"] == "webP"


def test_opaque_without_format_leaves_format_to_upstream() -> None:
    assert "outputFormat" not in build(G1, background="opaque").step()["input"]


# -- model names and several errors at once -------------------------------------------------


@pytest.mark.parametrize("name", ["gpt-5", "dall-e-4", "", "midjourney"])
def test_unknown_model_lists_the_five(name: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_model(name)
    (error,) = caught.value.errors
    assert error.field == "model"
    assert "gpt-image-2, gpt-image-1.5, gpt-image-1, dall-e-3, dall-e-2" in error.message
    # The five of the orchestrator, and gpt-image-1-mini (the OpenAI lane's only).
    assert len(MODEL_NAMES) == 6


@pytest.mark.parametrize("operation", [Operation.CREATE, Operation.EDIT])
def test_the_civitai_catalog_says_gpt_image_1_mini_is_not_here(operation: Operation) -> None:
    with pytest.raises(CatalogError) as caught:
        build_request(Model.GPT_IMAGE_1_MINI, operation, RequestOptions(prompt="a fox"))
    assert caught.value.errors[0].field == "model"
    assert "gpt-image-1-mini is not available on this bot" in caught.value.errors[0].message


@pytest.mark.parametrize(
    ("name", "model"),
    [("gpt-image-1-5", G15), ("GPT-Image-2", G2), (" dall-e-3 ", D3), ("gpt-image-1.5", G15)],
)
def test_model_names_people_type(name: str, model: Model) -> None:
    assert parse_model(name) is model


def test_operation_names() -> None:
    assert parse_operation("edit") is EDIT
    assert parse_operation("createImage") is CREATE
    with pytest.raises(CatalogError):
        parse_operation("variant")


def test_several_bad_options_reported_together() -> None:
    errors = refusal(
        G15, prompt=" ", size="9x9", quantity=0, quality="ultra", format="gif", style="vivid"
    )
    assert set(errors) == {"prompt", "size", "quantity", "quality", "format", "style"}
    assert errors["size"].startswith("size must be one of")
    assert errors["quantity"] == "quantity must be between 1 and 4 for gpt-image-1.5"
    assert errors["style"] == "style is only available for dall-e-3"


def test_several_bad_options_on_an_edit() -> None:
    errors = refusal(
        D2, EDIT, images=(SOURCE, SOURCE), quantity=11, quality="hd", prompt="x" * 1001
    )
    assert set(errors) == {"image", "quantity", "quality", "prompt"}


def test_catalog_error_text_joins_the_messages() -> None:
    with pytest.raises(CatalogError) as caught:
        build(G1, quantity=11, style="vivid")
    assert "quantity must be between 1 and 10" in str(caught.value)
    assert "style is only available for dall-e-3" in str(caught.value)


def test_accepted_request_sends_what_decides_price_and_picture() -> None:
    # Quality, quantity and background are sent explicitly, not left to upstream defaults.
    step = build(G1).step()["input"]
    assert step == {
        "engine": "openai",
        "model": "gpt-image-1",
        "operation": "createImage",
        "prompt": "a cat",
        "size": "1024x1024",
        "quantity": 1,
        "background": "opaque",
        "quality": "auto",
    }
    assert build(D3).step()["input"]["size"] == "1024x1024"  # required by the schema
