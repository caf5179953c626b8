"""What each model can do, per operation: one table that the catalog, media and the commands
read. Which options a member may give, how many sources an edit takes, whether it takes a mask,
and the shape rules for its sources. The input models (inputs.py) say what the API accepts;
this says what the bot offers (a test keeps the two consistent)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog.names import Model, Operation

# OpenAI: dall-e-2 images and masks must be "less than 4MB"; read as decimal to be safe.
DALL_E_2_MAX_BYTES = 4_000_000


@dataclass(frozen=True)
class Capability:
    model: Model
    operation: Operation
    # Member options beyond prompt/size/quality/quantity/format that this pair takes.
    options: frozenset[str] = frozenset()
    max_quantity: int = 1
    # Edits: how many source images, whether a mask, and rules for the sources.
    max_sources: int = 0
    mask: bool = False
    square_source: bool = False
    source_max_bytes: int | None = None
    # A mask must go with a PNG first source (OpenAI wants image and mask in one format).
    png_with_mask: bool = True

    def takes(self, option: str) -> bool:
        return option in self.options


C, E = Operation.CREATE, Operation.EDIT
_TABLE = (
    Capability(Model.GPT_IMAGE_2, C, max_quantity=4),
    Capability(Model.GPT_IMAGE_2, E, max_quantity=4, max_sources=16, mask=True),
    Capability(Model.GPT_IMAGE_1_5, C, frozenset({"background"}), max_quantity=4),
    Capability(Model.GPT_IMAGE_1_5, E, frozenset({"background", "fidelity"}), 4, max_sources=16),
    Capability(Model.GPT_IMAGE_1, C, frozenset({"background"}), max_quantity=10),
    Capability(Model.GPT_IMAGE_1, E, frozenset({"background"}), 10, max_sources=16, mask=True),
    Capability(Model.DALL_E_3, C, frozenset({"style"})),
    Capability(Model.DALL_E_2, C, max_quantity=10),
    Capability(
        Model.DALL_E_2,
        E,
        max_quantity=10,
        max_sources=1,
        mask=True,
        square_source=True,
        source_max_bytes=DALL_E_2_MAX_BYTES,
    ),
)
CAPABILITIES: dict[tuple[Model, Operation], Capability] = {
    (c.model, c.operation): c for c in _TABLE
}
# Models only another lane serves (not in the orchestrator's schema, so not in CAPABILITIES):
# what the commands and the media layer need to know of them. The lane validates the rest.
LANE_ONLY: dict[tuple[Model, Operation], Capability] = {
    (c.model, c.operation): c
    for c in (
        Capability(Model.GPT_IMAGE_1_MINI, C, frozenset({"background"}), max_quantity=10),
        Capability(
            Model.GPT_IMAGE_1_MINI,
            E,
            frozenset({"background", "fidelity"}),
            10,
            max_sources=16,
            mask=True,
        ),
    )
}
# Options that only some models take (each listed in some Capability.options).
OPTIONAL = ("background", "style", "fidelity")


def capability(model: Model, operation: Operation) -> Capability | None:
    """What `model` can do for `operation`; None when it cannot do it at all."""
    return CAPABILITIES.get((model, operation)) or LANE_ONLY.get((model, operation))


def can_edit(model: Model) -> bool:
    return (model, E) in CAPABILITIES or (model, E) in LANE_ONLY


# The orchestrator's editing models (what the Civitai catalog's messages suggest).
EDITABLE: tuple[Model, ...] = tuple(m for m in Model if (m, E) in CAPABILITIES)
MASKABLE: tuple[Model, ...] = tuple(m for m in EDITABLE if CAPABILITIES[(m, E)].mask)


def takers(option: str) -> list[tuple[Model, Operation]]:
    """Every (model, operation) that takes `option` ("mask" included)."""
    if option == "mask":
        return [(c.model, c.operation) for c in _TABLE if c.mask]
    return [(c.model, c.operation) for c in _TABLE if c.takes(option)]


def names(models: tuple[Model, ...]) -> str:
    """ "a, b or c", for messages."""
    spelled = [m.value for m in models]
    return spelled[0] if len(spelled) == 1 else f"{', '.join(spelled[:-1])} or {spelled[-1]}"
