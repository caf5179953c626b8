"""The simulator's scripted outcomes and the answers they make (OpenAI-style error bodies)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.openai_api.sim_rules import SimError, SimJob

OUTCOMES = (
    "succeed",
    "moderation_blocked",  # 400, GPT image models' moderation
    "content_policy_violation",  # 400, dall-e's
    "model_not_found",  # 404
    "unauthorized",  # 401 (as a wrong key gets)
    "forbidden",  # 403
    "rate_limited",  # 429 with Retry-After
    "insufficient_quota",  # 429 that retrying cannot fix
    "server_error",  # `status` (500 by default), with Retry-After when given
    "break",  # a stream that drops the connection after `after_events` events
    "slow",  # nothing at all for `delay` real seconds, then the usual answer
    "no_stream",  # a plain JSON answer although `stream` was asked (an endpoint ignoring it)
    "no_completed",  # a stream that ends cleanly with previews only
    "bad_partial",  # previews cut short (a PNG/JPEG's first half), then the usual image
    "bad_base64",  # a final image that is not base64
    "bad_last_image",  # the last final image is base64 of something that is not an image
    "error_event",  # a stream that sends previews, then an `error` event with `code`
    "proxy_echo",  # 400 plain text from a gateway that echoes the request's headers
)


@dataclass(frozen=True)
class Outcome:
    kind: str = "succeed"
    status: int = 500
    retry_after: float | None = None
    after_events: int = 1
    delay: float = 30.0
    code: str = "moderation_blocked"

    def __post_init__(self) -> None:
        if self.kind not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.kind!r}: one of {', '.join(OUTCOMES)}")


def early_answer(outcome: Outcome, authorization: str = "") -> web.Response | None:
    """The scripted answers that come before any validation."""
    kind = outcome.kind
    if kind == "proxy_echo":  # the key straddles the 300th character
        page = "Rejected by the gateway. " * 10
        page += f"Request headers: Authorization: {authorization}\n"
        return web.Response(status=400, text=page, content_type="text/plain")
    if kind == "unauthorized":
        return error_response(SimError(401, "Incorrect API key provided.", code="invalid_api_key"))
    if kind == "forbidden":
        return error_response(
            SimError(403, "Your organization must be verified to use this model.", code=None)
        )
    if kind == "model_not_found":
        return error_response(
            SimError(
                404,
                "The model has been deprecated and is no longer available.",
                code="model_not_found",
            )
        )
    if kind == "insufficient_quota":
        return error_response(
            SimError(429, "You exceeded your current quota.", code="insufficient_quota")
        )
    if kind in ("rate_limited", "server_error"):
        status = 429 if kind == "rate_limited" else outcome.status
        code = "rate_limit_exceeded" if kind == "rate_limited" else "server_error"
        response = error_response(SimError(status, f"simulated {status}", code=code, kind=code))
        if outcome.retry_after is not None:
            response.headers["Retry-After"] = f"{outcome.retry_after:g}"
        return response
    return None


def job_meta(job: SimJob) -> dict[str, Any]:
    quality = job.quality if job.quality in ("low", "medium", "high") else "medium"
    return {
        "created_at": int(time.time()),
        "size": f"{job.width}x{job.height}",
        "quality": quality,
        "background": "transparent" if job.background == "transparent" else "opaque",
        "output_format": job.output_format,
    }


def json_response(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


def error_response(error: SimError) -> web.Response:
    return json_response(error.status, error.body())
