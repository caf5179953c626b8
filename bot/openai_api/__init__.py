"""The OpenAI lane: the Images API (or any OpenAI-compatible endpoint) as a second provider.

catalog (models and limits), request (options to wire fields), pricing (Buzz), identity (the
`user` hash), client (+ results, sse, upstream, errors), simulator (+ sim_rules, sim_outcomes,
sim_usage). Pure modules do no I/O; nothing here imports discord.
"""

from bot.openai_api.catalog import MODEL_NAMES, MODELS, Availability, ModelSpec, availability
from bot.openai_api.client import OpenAIImagesClient, Upload, UploadLike
from bot.openai_api.errors import (
    AuthFailed,
    BadResponse,
    Blocked,
    InvalidRequest,
    ModelUnavailable,
    OpenAIError,
    OperatorProblem,
    QuotaExhausted,
    Unavailable,
)
from bot.openai_api.identity import user_hash
from bot.openai_api.pricing import PriceTable
from bot.openai_api.request import LaneSettings, OpenAIRequest, build_openai_request
from bot.openai_api.results import ImagesResult, PartialImage

__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "AuthFailed",
    "Availability",
    "BadResponse",
    "Blocked",
    "ImagesResult",
    "InvalidRequest",
    "LaneSettings",
    "ModelSpec",
    "ModelUnavailable",
    "OpenAIError",
    "OpenAIImagesClient",
    "OpenAIRequest",
    "OperatorProblem",
    "PartialImage",
    "PriceTable",
    "QuotaExhausted",
    "Unavailable",
    "Upload",
    "UploadLike",
    "availability",
    "build_openai_request",
    "user_hash",
]
