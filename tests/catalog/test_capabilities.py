"""The capabilities table (what the bot offers) agrees with the input models (what the API
accepts): every option, mask, source count and quantity the table promises is a real field."""

from __future__ import annotations

import pytest

from bot.catalog.capabilities import CAPABILITIES, EDITABLE, MASKABLE, capability, takers
from bot.catalog.inputs import INPUT_MODELS
from bot.catalog.names import Model, Operation

FIELD = {"background": "background", "style": "style", "fidelity": "input_fidelity"}


def test_every_input_model_has_its_capability_and_back():
    assert set(CAPABILITIES) == set(INPUT_MODELS)


@pytest.mark.parametrize("pair", sorted(CAPABILITIES), ids=lambda p: f"{p[0]}/{p[1]}")
def test_what_the_table_promises_the_input_model_accepts(pair):
    can, cls = CAPABILITIES[pair], INPUT_MODELS[pair]
    fields = cls.model_fields
    for option in can.options:
        assert FIELD[option] in fields, option
    assert can.mask == any(name in fields for name in ("mask", "mask_image"))
    if can.operation is Operation.CREATE:
        assert can.max_sources == 0
    elif "images" in fields:
        limit = next(m.max_length for m in fields["images"].metadata if hasattr(m, "max_length"))
        assert can.max_sources == limit
    else:
        assert "image" in fields and can.max_sources == 1
    if "quantity" in fields:
        top = next(m.le for m in fields["quantity"].metadata if hasattr(m, "le"))
        assert can.max_quantity == top
    else:
        assert can.max_quantity == 1


def test_the_derived_lists():
    assert EDITABLE == (Model.GPT_IMAGE_2, Model.GPT_IMAGE_1_5, Model.GPT_IMAGE_1, Model.DALL_E_2)
    assert MASKABLE == (Model.GPT_IMAGE_2, Model.GPT_IMAGE_1, Model.DALL_E_2)
    assert capability(Model.DALL_E_3, Operation.EDIT) is None
    assert takers("fidelity") == [(Model.GPT_IMAGE_1_5, Operation.EDIT)]
