"""What an error answer from the Images API means: a typed error, or a retry.

OpenAI error bodies are `{"error": {"message", "type", "param", "code"}}`; the same object may
also come as an `error` event in a stream, or in a 200 from a compatible endpoint. The code
decides first (a moderation block is a block whatever the status), then the status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from bot import net
from bot.openai_api.errors import (
    AuthFailed,
    Blocked,
    InvalidRequest,
    ModelUnavailable,
    OpenAIError,
    OperatorProblem,
    QuotaExhausted,
)
from bot.openai_api.results import ImagesResult

BLOCK_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
MODEL_CODES = frozenset(
    {"model_not_found", "model_not_available", "model_deprecated", "deprecated_model"}
)
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
RETRY_STATUS = frozenset({408, 409, 425, 429})
# Answers that mean the request was not acted on: rate limited, or the service refused it.
NOT_ACCEPTED = frozenset({425, 429, 503})
# Error codes seen in streamed `error` events that mean "try again".
RETRY_CODES = frozenset({"rate_limit_exceeded", "server_error", "overloaded", "timeout"})


class Retry(Exception):
    """A retryable failure of one attempt: what went wrong, and what the endpoint advised."""

    def __init__(
        self, problem: str, maybe_accepted: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.maybe_accepted = maybe_accepted
        self.retry_after = retry_after
        # The endpoint streamed output (previews or an image) first: the call ran, and was billed.
        self.produced = False
        # The images that came whole before it broke (some of n), made and billed upstream.
        self.partial: ImagesResult | None = None


def classify(
    status: int | None,
    body: str | Mapping[str, Any],
    headers: Mapping[str, str],
    model: str | None,
    redact: Callable[[str], str],
) -> OpenAIError | Retry:
    """`status` None: an error object that came inside a 200 or a stream (already accepted)."""
    error = body if isinstance(body, Mapping) else _error_object(body)
    code = _text(error.get("code"))
    param = _text(error.get("param"))
    said = _text(error.get("message"))
    message = (redact(said) if said else _fallback(body, redact))[:500]
    where = f"{status}" if status is not None else "in its answer"
    if code in BLOCK_CODES:
        return Blocked(
            f"the endpoint refused the prompt or image ({code})", code=code, status=status
        )
    if status == 401:
        # OpenAI's 401 text quotes part of the key: say nothing of it.
        return AuthFailed("the endpoint refused the API key (401)", status=401)
    if status == 403:
        return AuthFailed(f"the endpoint refused access (403): {message}", status=403)
    if code in QUOTA_CODES:
        return QuotaExhausted(f"the endpoint's account is out of credit ({code}): {message}")
    if code in MODEL_CODES or (status in (400, 404) and param == "model"):
        return ModelUnavailable(
            f"the endpoint does not serve {model or 'this model'} ({code or status}): {message}",
            model=model,
            code=code,
            status=status,
        )
    if status is None:
        accepted = code not in ("rate_limit_exceeded",)
        if code in RETRY_CODES or not code:
            return Retry(
                f"the endpoint reported an error ({code or 'no code'}): {message}", accepted
            )
        return InvalidRequest(
            f"the endpoint refused the request {where}: {message}", param=param, code=code
        )
    if status in RETRY_STATUS or status >= 500:
        return Retry(
            f"the endpoint answered {status}" + (f" ({code})" if code else ""),
            status not in NOT_ACCEPTED,
            net.retry_after_ms(headers),
        )
    if status == 404:
        return OperatorProblem(
            f"the endpoint has no such route (404): check OPENAI_BASE_URL: {message}", status=404
        )
    return InvalidRequest(
        f"the endpoint refused the request ({status}"
        + (f", {param}" if param else "")
        + f"): {message}",
        param=param,
        code=code,
        status=status,
    )


def _error_object(text: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # nested deeper than the parser goes: not JSON
        return {}
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"]
    return data if isinstance(data, dict) else {}


def _fallback(body: str | Mapping[str, Any], redact: Callable[[str], str]) -> str:
    # Redacted whole, then cut: a key echoed across the cut would keep its first part.
    return redact(body.strip())[:300] if isinstance(body, str) else ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
