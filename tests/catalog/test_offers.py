"""Cheaper variants after a refusal over money: each validated and priced by the catalog, within
what the member can spend, one of each kind first, dearest first."""

from __future__ import annotations

from bot.catalog import Model, Operation, RequestOptions
from bot.catalog.offers import cheaper_variants
from bot.catalog.request import build_request


def everything(_: str) -> bool:
    return True


def offers(spendable: int, enabled=everything, model=Model.GPT_IMAGE_2, **options):
    asked = RequestOptions(prompt="a lighthouse", **options)
    return cheaper_variants(model, Operation.CREATE, asked, spendable=spendable, enabled=enabled)


def labels(found) -> list[str]:
    return [o.label for o in found]


def test_nothing_to_offer_with_an_empty_balance():
    assert offers(0) == []
    assert offers(12) == []  # below the cheapest image of all (gpt-image-2 low, 13)


def test_exactly_the_cheapest_tier():
    assert labels(offers(13)) == ["low · 13 Buzz"]


def test_one_of_each_kind_then_the_next_dearest():
    # high 1024x1024 = 286; 195 affords the smallest tier exactly.
    found = offers(195)
    assert labels(found) == [
        "1024x768 · 195 Buzz",
        "gpt-image-1.5 medium · 100 Buzz",
        "medium · 78 Buzz",
        "low · 13 Buzz",
    ]
    assert [o.kind for o in found] == ["size", "model", "quality", "quality"]


def test_each_offer_is_exactly_what_admission_would_price():
    for offer in offers(300, quality="high", quantity=2):
        priced = build_request(offer.model, Operation.CREATE, offer.options)
        assert priced.buzz == offer.buzz <= 300
        assert offer.options.prompt == "a lighthouse"


def test_fewer_images():
    # medium ×4 = 312.
    assert labels(offers(200, quality="medium", quantity=4)) == [
        "2 images · 156 Buzz",
        "gpt-image-1.5 low · 100 Buzz",
        "1 image · 78 Buzz",
        "low · 52 Buzz",
    ]


def test_a_portrait_request_is_offered_portrait_tiers():
    found = offers(221, size="1440x2560", quality="high")  # 2560x1440 tier: 299
    sizes = [o.options.size for o in found if o.kind == "size"]
    assert sizes == ["1024x1536"]  # 221: the dearest affordable, the same way round


def test_models_that_are_off_are_not_offered():
    found = offers(195, enabled=lambda m: m not in ("gpt-image-1.5", "gpt-image-1"))
    assert all(o.model is Model.GPT_IMAGE_2 for o in found)


def test_an_edit_is_offered_only_its_own_model():
    asked = RequestOptions(prompt="night", quality="high").with_sources(("source://0",), None)
    found = cheaper_variants(
        Model.GPT_IMAGE_2,
        Operation.EDIT,
        asked,
        spendable=100,
        enabled=everything,
        input_size=(1024, 1024),
    )
    assert labels(found) == ["medium · 78 Buzz", "low · 13 Buzz"]
    assert all(o.options.images == () for o in found)


def test_only_cheaper_than_what_was_asked():
    assert all(o.buzz < 286 for o in offers(10_000))


def test_a_model_whose_qualities_cost_the_same_is_offered_other_models():
    assert labels(offers(299, model=Model.DALL_E_3)) == [
        "gpt-image-2 high · 286 Buzz",
        "gpt-image-1.5 medium · 100 Buzz",
        "gpt-image-1 medium · 100 Buzz",
        "gpt-image-2 medium · 78 Buzz",
    ]
