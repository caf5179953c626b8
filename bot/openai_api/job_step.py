"""What the OpenAI lane stores with a job (its `step`) and reads back to make the call.

The step is the accepted request's wire fields (prompt, n, size, quality, output_format, stream,
partial_images, the `user` hash...) with the edit sources as `source://N` references to the
job's stored images, so a re-run (a retry, a restart) sends exactly what was priced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.catalog.names import Operation
from bot.openai_api.request import EDITS, OpenAIRequest

STEP_TYPE = "openaiImages"


@dataclass(frozen=True)
class OpenAIJob:
    """An accepted request as admission sees it (a LaneRequest): price, warnings, step."""

    request: OpenAIRequest
    images: tuple[str, ...] = ()
    mask: str | None = None

    @property
    def buzz(self) -> int:
        return self.request.buzz

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.request.warnings

    def step(self) -> dict[str, Any]:
        r = self.request
        return {
            "$type": STEP_TYPE,
            "endpoint": r.endpoint,
            "fields": dict(r.fields),
            "n": r.n,
            "image_field": r.image_field,
            "output_format": r.output_format,
            "images": list(self.images),
            "mask": self.mask,
        }


@dataclass(frozen=True)
class Step:
    """A stored step, read back."""

    operation: Operation
    fields: dict[str, Any] = field(repr=False)
    n: int
    image_field: str
    output_format: str

    @property
    def model(self) -> str:
        return str(self.fields.get("model") or "")

    @classmethod
    def of(cls, step: dict[str, Any]) -> Step:
        if step.get("$type") != STEP_TYPE:
            raise ValueError(f"not an OpenAI lane step: {step.get('$type')!r}")
        edit = step.get("endpoint") == EDITS
        return cls(
            operation=Operation.EDIT if edit else Operation.CREATE,
            fields=dict(step["fields"]),
            n=int(step.get("n") or 1),
            image_field=str(step.get("image_field") or "image[]"),
            output_format=str(step.get("output_format") or "png"),
        )
