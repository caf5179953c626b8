"""The orchestrator's answers: JSON bodies, problem documents, faults and lost answers."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.civitai.simulator.scripting import Fault

log = logging.getLogger(__name__)

# A typed request key where aiohttp has them (a plain string key warns there), else a string.
LOSE: Any = (
    web.RequestKey("sim.lose_answer", bool) if hasattr(web, "RequestKey") else "sim.lose_answer"
)
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
}


@web.middleware
async def lose_answers(request: web.Request, handler: Any) -> web.StreamResponse:
    """A request marked by `lose_answer` has been acted on; its answer never arrives."""
    response = await handler(request)
    if request.get(LOSE) and request.transport is not None:
        request.transport.abort()
    return response


def wait_seconds(request: web.Request) -> float:
    try:
        return max(0.0, float(request.query.get("wait", "0")))
    except ValueError:
        return 0.0


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def json_response(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def problem(status: int, detail: str) -> web.Response:
    body = {"type": None, "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    return json_response(status, body)


def validation_problem(errors: list[Any]) -> web.Response:
    """400 ValidationProblemDetails: messages grouped by field path."""
    grouped: dict[str, list[str]] = {}
    for err in errors:
        path, message = (err.path, err.message) if hasattr(err, "path") else err
        grouped.setdefault(path or "body", []).append(message)
    body = {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": grouped,
    }
    return json_response(400, body)


def fault_response(fault: Fault) -> web.Response:
    if fault.body is not None:
        return web.Response(
            status=fault.status, body=fault.body, headers={"Content-Type": "application/json"}
        )
    if fault.status == 400:
        return validation_problem([("body", "scripted validation failure")])
    response = problem(fault.status, f"simulated {fault.status}")
    if fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    return response
