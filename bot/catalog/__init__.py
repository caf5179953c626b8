"""The model catalog: closed input models, validation in plain words, and Buzz pricing. No I/O."""

from bot.catalog.errors import CatalogError, FieldError
from bot.catalog.names import MODEL_NAMES, Model, Operation, parse_model, parse_operation
from bot.catalog.request import ImageRequest, RequestOptions, build_request

__all__ = [
    "MODEL_NAMES",
    "CatalogError",
    "FieldError",
    "ImageRequest",
    "Model",
    "Operation",
    "RequestOptions",
    "build_request",
    "parse_model",
    "parse_operation",
]
