"""The OpenAI lane's catalog: what each model takes, the wire fields, and refusals by option."""

from __future__ import annotations

import itertools

import pytest

from bot.catalog import CatalogError, RequestOptions
from bot.catalog.names import Operation
from bot.openai_api.catalog import (
    MODEL_NAMES,
    fit_gpt2_size,
    gpt2_size_problems,
    model_spec,
    nearest_standard_size,
)
from bot.openai_api.pricing import PriceTable
from bot.openai_api.request import LaneSettings, OpenAIRequest, build_openai_request

CREATE, EDIT = Operation.CREATE, Operation.EDIT
USER = "u-0123456789abcdef0123456789abcdef"
EVERYTHING_PRICED = PriceTable({"gpt-image-1-mini": {"low": 10, "medium": 40, "high": 150}})


def build(
    model: str,
    operation: Operation = CREATE,
    *,
    settings: LaneSettings | None = None,
    prices: PriceTable = EVERYTHING_PRICED,
    input_size: tuple[int, int] | None = None,
    **options: object,
) -> OpenAIRequest:
    if operation is EDIT:
        options.setdefault("images", ("source-1",))
    opts = RequestOptions(prompt=str(options.pop("prompt", "a lighthouse")), **options)  # type: ignore[arg-type]
    return build_openai_request(
        model, operation, opts, prices=prices, user=USER, settings=settings, input_size=input_size
    )


def refusal(model: str, operation: Operation = CREATE, **options: object) -> dict[str, str]:
    with pytest.raises(CatalogError) as caught:
        build(model, operation, **options)  # type: ignore[arg-type]
    return {e.field: e.message for e in caught.value.errors}


# -- what is sent --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["gpt-image-2", "gpt-image-1.5", "gpt-image-1", "gpt-image-1-mini"]
)
def test_gpt_models_always_send_n_size_quality_and_format(model: str) -> None:
    request = build(model)
    fields = request.fields
    assert {"n", "size", "quality", "output_format"} <= fields.keys()
    assert fields["n"] == 1 and fields["size"] == "1024x1024"
    assert fields["output_format"] == "jpeg" == request.output_format
    assert fields["stream"] is True and fields["partial_images"] == 2
    assert fields["user"] == USER
    assert "response_format" not in fields  # GPT image models refuse it


def test_the_members_choices_are_sent_as_the_api_spells_them() -> None:
    request = build(
        "gpt-image-1.5",
        size="1536x1024",
        quality="Low",
        quantity=3,
        format="JPG",
        background="opaque",
    )
    assert request.fields == {
        "model": "gpt-image-1.5",
        "prompt": "a lighthouse",
        "n": 3,
        "size": "1536x1024",
        "quality": "low",
        "background": "opaque",
        "output_format": "jpeg",
        "stream": True,
        "partial_images": 2,
        "user": USER,
    }
    assert request.endpoint == "images/generations" and request.stream


def test_operator_settings_reach_the_wire() -> None:
    settings = LaneSettings(partial_images=3, moderation="low", output_compression=70)
    fields = build("gpt-image-1", settings=settings, format="webp").fields
    assert fields["partial_images"] == 3
    assert fields["moderation"] == "low"
    assert fields["output_compression"] == 70
    # Compression means nothing for png: it is not sent.
    assert "output_compression" not in build("gpt-image-1", settings=settings, format="png").fields


def test_transparent_background_picks_png_and_refuses_jpeg() -> None:
    assert build("gpt-image-1", background="transparent").fields["output_format"] == "png"
    assert build("gpt-image-1", background="transparent", format="webp").output_format == "webp"
    assert (
        "png or webp"
        in refusal("gpt-image-1", background="transparent", format="jpeg")["background"]
    )


def test_dall_e_never_streams_and_asks_for_base64() -> None:
    d3 = build("dall-e-3", quality="hd", style="natural", size="1792x1024")
    assert d3.fields == {
        "model": "dall-e-3",
        "prompt": "a lighthouse",
        "n": 1,
        "size": "1792x1024",
        "quality": "hd",
        "style": "natural",
        "response_format": "b64_json",
        "user": USER,
    }
    assert not d3.stream and d3.output_format == "png"
    d2 = build("dall-e-2", quantity=4, size="512x512")
    assert "quality" not in d2.fields and "stream" not in d2.fields
    assert d2.fields["n"] == 4 and d2.fields["response_format"] == "b64_json"


def test_edits_name_their_image_parts_and_take_fidelity() -> None:
    edit = build("gpt-image-1.5", EDIT, images=("a", "b", "c"), fidelity="high", mask="m")
    assert edit.endpoint == "images/edits"
    assert edit.image_field == "image[]"
    assert edit.fields["input_fidelity"] == "high"
    dall_e = build("dall-e-2", EDIT, mask="m")
    assert dall_e.image_field == "image" and dall_e.endpoint == "images/edits"


def test_an_edit_without_a_size_follows_the_first_sources_shape() -> None:
    # gpt-image-2: the closest valid size; the others: the closest standard size.
    g2 = build("gpt-image-2", EDIT, input_size=(1200, 800))
    width, height = map(int, g2.size.split("x"))
    assert not gpt2_size_problems(width, height)
    assert abs(width / height - 1.5) < 0.05
    assert g2.priced_size == (width, height)
    assert build("gpt-image-1", EDIT, input_size=(1200, 800)).size == "1536x1024"
    assert build("gpt-image-1", EDIT, input_size=(700, 1000)).size == "1024x1536"
    assert build("gpt-image-1", EDIT).size == "1024x1024"  # source size unknown: the default


def test_a_member_may_still_ask_for_auto_where_the_price_does_not_depend_on_it() -> None:
    assert build("gpt-image-1.5", size="auto").fields["size"] == "auto"
    g2 = build("gpt-image-2", EDIT, size="auto", input_size=(1536, 1024))
    assert g2.size == "auto" and g2.priced_size == (1536, 1024)
    assert "price depends" in refusal("gpt-image-2", size="auto")["size"]
    assert "give a size" in refusal("gpt-image-2", EDIT, size="auto")["size"]


# -- gpt-image-2 sizes (seed 003) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ("1000x1000", "multiples of 16"),
        ("3856x1024", "longest side"),
        ("2400x784", "3:1"),  # multiples of 16, pixels fine, aspect 3.06
        ("512x512", "655,360"),
        ("3840x2176", "8,294,400"),
    ],
)
def test_gpt2_sizes_outside_seed_003s_rules_are_refused_with_a_suggestion(
    size: str, problem: str
) -> None:
    message = refusal("gpt-image-2", size=size)["size"]
    assert problem in message
    suggested = message.rsplit("Nearest valid: ", 1)[1]
    width, height = map(int, suggested.split("x"))
    assert not gpt2_size_problems(width, height)


@pytest.mark.parametrize("size", ["1536x1024", "3840x2160", "2160x3840", "1920x640", "816x816"])
def test_gpt2_takes_any_size_within_the_rules(size: str) -> None:
    assert build("gpt-image-2", size=size).fields["size"] == size


@pytest.mark.parametrize("size", ["1024x²", "①x1024", "١٠٢٤x١٠٢٤", "1024x", "x1024"])
def test_a_size_of_other_characters_than_ascii_digits_is_refused_by_name(size: str) -> None:
    # "²" and "①" pass str.isdigit() but int() cannot read them (it raised ValueError).
    assert "WIDTHxHEIGHT" in refusal("gpt-image-2", size=size)["size"]


def test_gpt2_above_1440p_is_accepted_with_a_warning() -> None:
    assert build("gpt-image-2", size="2560x1440").warnings == ()
    assert "experimental" in build("gpt-image-2", size="3840x2160").warnings[0]


def test_fit_gpt2_size_always_gives_a_valid_size() -> None:
    for width, height in itertools.product([1, 100, 777, 1080, 2000, 5000, 20000], repeat=2):
        fitted = fit_gpt2_size(width, height)
        assert not gpt2_size_problems(*fitted), (width, height, fitted)
    assert fit_gpt2_size(1024, 1024) == (1024, 1024)
    assert fit_gpt2_size(1920, 1080) in ((1920, 1072), (1920, 1088))


def test_nearest_standard_size() -> None:
    assert nearest_standard_size(1000, 1000) == "1024x1024"
    assert nearest_standard_size(1920, 1080) == "1536x1024"
    assert nearest_standard_size(1080, 1920) == "1024x1536"


# -- limits per model ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size", "allowed"),
    [
        ("gpt-image-1.5", "1792x1024", "auto, 1024x1024, 1536x1024, 1024x1536"),
        ("dall-e-3", "1536x1024", "1024x1024, 1792x1024, 1024x1792"),
        ("dall-e-2", "1024x1536", "256x256, 512x512, 1024x1024"),
    ],
)
def test_fixed_size_models_list_their_sizes(model: str, size: str, allowed: str) -> None:
    assert refusal(model, size=size)["size"] == f"size must be one of {allowed} for {model}"


@pytest.mark.parametrize(
    ("model", "limit"),
    [("gpt-image-2", 10), ("gpt-image-1.5", 10), ("gpt-image-1", 10), ("dall-e-2", 10)],
)
def test_quantity_limits(model: str, limit: int) -> None:
    assert build(model, quantity=limit).n == limit
    assert f"between 1 and {limit}" in refusal(model, quantity=limit + 1)["quantity"]
    assert "quantity" in refusal(model, quantity=0)


def test_dall_e_3_makes_one_image() -> None:
    assert build("dall-e-3", quantity=1).n == 1
    assert refusal("dall-e-3", quantity=2)["quantity"] == "dall-e-3 makes one image per request"


@pytest.mark.parametrize(
    ("model", "cap"), [("gpt-image-2", 32_000), ("dall-e-3", 4_000), ("dall-e-2", 1_000)]
)
def test_prompt_caps(model: str, cap: int) -> None:
    assert build(model, prompt="x" * cap).fields["prompt"] == "x" * cap
    message = refusal(model, prompt="x" * (cap + 1))["prompt"]
    assert f"at most {cap:,}" in message
    assert refusal(model, prompt="   ")["prompt"] == "prompt must not be empty"


def test_options_a_model_lacks_are_refused_by_name() -> None:
    assert refusal("dall-e-2", quality="high") == {"quality": "dall-e-2 has no quality option"}
    assert refusal("gpt-image-1", style="vivid") == {
        "style": "style is only available for dall-e-3"
    }
    assert "transparent" in refusal("gpt-image-2", background="transparent")["background"]
    assert refusal("dall-e-3", format="jpeg") == {
        "format": "dall-e-3 only answers in png on this lane"
    }
    assert build("dall-e-3", format="png").output_format == "png"
    assert refusal("gpt-image-2", EDIT, fidelity="high")["fidelity"] == (
        "fidelity is only available for gpt-image-1.5, gpt-image-1 and gpt-image-1-mini edits"
    )
    assert "low, high" in refusal("gpt-image-1.5", EDIT, fidelity="max")["fidelity"]
    assert refusal("gpt-image-1", fidelity="high") == {
        "fidelity": "fidelity is only used when editing images"
    }
    assert refusal("gpt-image-1", quality="hd")["quality"] == (
        "quality must be one of low, medium, high, auto for gpt-image-1"
    )


def test_every_bad_option_is_reported_at_once() -> None:
    errors = refusal("gpt-image-1", size="2x2", quality="ultra", quantity=11, format="gif")
    assert set(errors) == {"size", "quality", "quantity", "format"}


def test_sources_and_masks() -> None:
    assert (
        refusal("gpt-image-1", images=("a",))["image"] == "source images are only used when editing"
    )
    assert refusal("gpt-image-1", mask="m")["mask"] == "a mask is only used when editing an image"
    assert (
        refusal("gpt-image-1", EDIT, images=())["image"] == "gpt-image-1 edits need a source image"
    )
    sixteen = tuple(f"s{i}" for i in range(16))
    assert build("gpt-image-2", EDIT, images=sixteen, size="1024x1024").fields["n"] == 1
    assert "at most 16" in refusal("gpt-image-2", EDIT, images=(*sixteen, "x"))["image"]
    assert refusal("dall-e-2", EDIT, images=("a", "b"))["image"] == (
        "dall-e-2 edits take exactly one source image"
    )
    # The Images API takes a mask on every GPT image model (the orchestrator does not on 1.5).
    assert build("gpt-image-1.5", EDIT, mask="m").model == "gpt-image-1.5"


def test_model_and_operation_refusals() -> None:
    with pytest.raises(CatalogError) as caught:
        build("dall-e-3", EDIT)
    assert caught.value.errors[0].field == "operation"
    with pytest.raises(CatalogError) as caught:
        build("gpt-image-9")
    assert caught.value.errors[0].field == "model"
    served = LaneSettings(served=frozenset({"gpt-image-1"}))
    with pytest.raises(CatalogError) as caught:
        build("gpt-image-2", settings=served)
    assert caught.value.errors[0].message == "gpt-image-2 is not available on this bot"
    assert build("gpt-image-1-5").model == "gpt-image-1.5"  # the Discord spelling


def test_a_raw_discord_id_is_never_accepted_as_user() -> None:
    with pytest.raises(ValueError, match="never a raw Discord id"):
        build_openai_request(
            "gpt-image-1",
            CREATE,
            RequestOptions(prompt="x"),
            prices=PriceTable(),
            user="123456789012345678",
        )


def test_lane_settings_are_checked() -> None:
    for bad in ({"partial_images": 4}, {"moderation": "off"}, {"output_compression": 101}):
        with pytest.raises(ValueError):
            LaneSettings(**bad)  # type: ignore[arg-type]


def test_the_catalog_lists_the_six_models_with_their_shapes() -> None:
    assert MODEL_NAMES == (
        "gpt-image-2",
        "gpt-image-1.5",
        "gpt-image-1",
        "gpt-image-1-mini",
        "dall-e-3",
        "dall-e-2",
    )
    g2 = model_spec("gpt-image-2")
    assert g2 is not None and g2.sizes is None and g2.fidelities == ()
    d3 = model_spec("dall-e-3")
    assert d3 is not None and not d3.streams and d3.operations == {CREATE}
