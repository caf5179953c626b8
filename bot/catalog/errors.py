"""Validation errors that name the option and say in plain words what is allowed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class CatalogError(ValueError):
    """One or more options are invalid; nothing may be sent upstream."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(e.message for e in self.errors))

    @classmethod
    def single(cls, field: str, message: str) -> CatalogError:
        return cls([FieldError(field, message)])
