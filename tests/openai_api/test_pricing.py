"""The lane's Buzz prices, which models the bot may offer, and the `user` hash."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bot.catalog import CatalogError, RequestOptions
from bot.catalog.names import Model, Operation
from bot.catalog.pricing import total_price
from bot.openai_api.catalog import MODEL_NAMES, availability
from bot.openai_api.identity import user_hash
from bot.openai_api.pricing import PriceTable
from bot.openai_api.request import build_openai_request

CREATE, EDIT = Operation.CREATE, Operation.EDIT


def buzz(model: str, prices: PriceTable | None = None, **options: object) -> int:
    operation = EDIT if options.get("images") else CREATE
    input_size = options.pop("input_size", None)
    request = build_openai_request(
        model,
        operation,
        RequestOptions(prompt="a kite", **options),  # type: ignore[arg-type]
        prices=prices or PriceTable(),
        input_size=input_size,  # type: ignore[arg-type]
    )
    return request.buzz


def test_gpt2_medium_1536x1024_is_65() -> None:
    assert buzz("gpt-image-2", size="1536x1024", quality="medium") == 65


@pytest.mark.parametrize(
    ("size", "quality", "n", "expected"),
    [
        ("1024x1024", "high", 1, 286),  # DESIGN.md's worked examples
        ("1920x1072", "high", 2, 416),
        ("3840x2160", "medium", 1, 143),
        ("1024x768", "low", 3, 39),
    ],
)
def test_gpt2_prices_follow_the_civitai_tiers(
    size: str, quality: str, n: int, expected: int
) -> None:
    assert buzz("gpt-image-2", size=size, quality=quality, quantity=n) == expected


def test_gpt2_edit_without_a_size_is_priced_from_the_output_it_will_make() -> None:
    # 1536x1024 source → 1536x1024 output → the 1024x1536 tier, medium 65.
    assert buzz("gpt-image-2", images=("s",), quality="medium", input_size=(1536, 1024)) == 65


@pytest.mark.parametrize(
    ("model", "quality", "expected"),
    [
        ("gpt-image-1.5", "low", 25),
        ("gpt-image-1.5", "medium", 100),
        ("gpt-image-1.5", "high", 375),
        ("gpt-image-1", "low", 25),
        ("gpt-image-1", "medium", 100),
        ("gpt-image-1", "high", 375),
        ("gpt-image-1", "auto", 300),
        ("dall-e-3", "hd", 300),
        ("dall-e-3", "standard", 300),
    ],
)
def test_flat_prices_match_the_civitai_table(model: str, quality: str, expected: int) -> None:
    assert buzz(model, quality=quality) == expected


def test_cost_is_the_unit_price_times_n() -> None:
    assert buzz("gpt-image-1.5", quality="medium", quantity=4) == 400
    assert buzz("dall-e-2", quantity=3) == 900
    assert buzz("gpt-image-1") == 300  # default quality auto, as on the Civitai lane


def test_defaults_equal_the_civitai_lanes_price_for_every_shared_model() -> None:
    table = PriceTable()
    for model in Model:
        for quality in ("low", "medium", "high", "auto", "hd", "standard", None):
            try:
                civitai = total_price(model, quality, 2, 1536, 1024)
            except (KeyError, AttributeError):
                assert table.price(model.value, quality, 2, 1536, 1024) is None
                continue
            assert table.price(model.value, quality, 2, 1536, 1024) == civitai, (model, quality)


def test_a_quality_without_a_price_is_refused_by_name() -> None:
    with pytest.raises(CatalogError) as caught:
        buzz("gpt-image-1.5", quality="auto")
    error = caught.value.errors[0]
    assert error.field == "quality"
    assert (
        error.message
        == "quality auto has no Buzz price for gpt-image-1.5: choose low, medium, high"
    )


def test_a_model_without_a_price_is_disabled_until_an_admin_sets_one() -> None:
    with pytest.raises(CatalogError) as caught:
        buzz("gpt-image-1-mini")
    assert caught.value.errors[0].field == "model"
    assert "no Buzz price" in caught.value.errors[0].message
    assert not PriceTable().is_priced("gpt-image-1-mini")
    priced = PriceTable({"gpt-image-1-mini": {"low": 8, "medium": 30, "high": 120}})
    assert buzz("gpt-image-1-mini", priced, quality="medium", quantity=2) == 60
    assert priced.is_priced("gpt-image-1-mini")


def test_overrides_replace_a_models_default() -> None:
    prices = PriceTable({"dall-e-3": 250, "gpt-image-2": {"low": 5, "medium": 50, "high": 200}})
    assert buzz("dall-e-3", prices, quality="hd") == 250
    # An override is flat: gpt-image-2's size tiers no longer apply.
    assert buzz("gpt-image-2", prices, size="3840x2160", quality="medium") == 50
    assert buzz("gpt-image-1.5", prices, quality="high") == 375  # untouched models keep theirs
    disabled = PriceTable({"gpt-image-1": None})
    assert not disabled.is_priced("gpt-image-1")


@pytest.mark.parametrize(
    "overrides",
    [
        {"dall-e-3": 2.5},
        {"dall-e-3": -1},
        {"dall-e-3": True},
        {"gpt-image-1": {"ultra": 5}},
        {"gpt-image-9": 10},
    ],
)
def test_bad_overrides_are_refused(overrides: dict) -> None:
    with pytest.raises(ValueError):
        PriceTable(overrides)


def test_availability_is_served_known_and_priced() -> None:
    prices = PriceTable()
    everything = availability(None, prices.priced_models())
    assert everything.enabled == tuple(m for m in MODEL_NAMES if m != "gpt-image-1-mini")
    assert everything.unpriced == ("gpt-image-1-mini",)
    served = availability(
        ["gpt-image-1", "gpt-image-1-mini", "flux-9", "gpt-image-1"], prices.priced_models()
    )
    assert served.enabled == ("gpt-image-1",)
    assert served.unpriced == ("gpt-image-1-mini",)
    assert served.unknown == ("flux-9",)


# -- the user hash -------------------------------------------------------------------------------


def test_user_hash_is_stable_per_member_and_guild() -> None:
    first = user_hash("pepper", 111222333444555666, 777888999000111222)
    assert first == user_hash("pepper", 111222333444555666, 777888999000111222)
    assert first == user_hash(SecretStr("pepper"), 111222333444555666, 777888999000111222)
    assert first != user_hash("pepper", 111222333444555666, 777888999000111223)
    assert first != user_hash("pepper", 111222333444555667, 777888999000111222)


def test_user_hash_is_salted_and_never_contains_the_ids() -> None:
    guild, member = 111222333444555666, 777888999000111222
    salted = user_hash("pepper", guild, member)
    assert salted != user_hash("salt", guild, member)
    assert str(guild) not in salted and str(member) not in salted
    assert not salted.isdigit() and len(salted) <= 64
    with pytest.raises(ValueError):
        user_hash("", guild, member)
