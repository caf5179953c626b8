"""Typed orchestrator errors. Their text never carries the API token."""

from __future__ import annotations

from bot.engine.lane import OperatorProblem, UpstreamUnavailable


class OrchestratorError(Exception):
    status: int | None = None
    # Whether an attempt of the call that ended in this error may have been acted on upstream
    # (a lost answer, then a refusal of the retry): a submit may then have made the workflow.
    maybe_accepted: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class ValidationFailed(OrchestratorError):
    """400: the orchestrator refused the request; `fields` maps each field to its complaints."""

    status = 400

    def __init__(self, message: str, fields: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.fields = fields


class Unauthorized(OrchestratorError, OperatorProblem):
    """401: the token is missing, wrong or revoked. An operator problem, not a member's."""

    status = 401


class Forbidden(OrchestratorError, OperatorProblem):
    """403: not enough Buzz on the account, or the token may not do this."""

    status = 403


class NotFound(OrchestratorError):
    status = 404


class Redirected(OrchestratorError, OperatorProblem):
    """A 3xx from the API: the base URL is wrong (http for https, a moved host). Redirects
    are not followed (the token would go wherever it points), nor retried."""


class Unavailable(OrchestratorError, UpstreamUnavailable):
    """429/5xx/timeouts/connection errors that outlasted every retry.

    `maybe_accepted` is False only when no attempt could have been acted on upstream (the
    connection never opened, or the answer was 429/503): then a submit surely created nothing.
    """

    def __init__(self, message: str, *, maybe_accepted: bool = True) -> None:
        OrchestratorError.__init__(self, message)
        self.maybe_accepted = maybe_accepted


class BlobRefused(OrchestratorError):
    """A blob download that is not allowed (host not on the list) or is too large."""


class BlobHostRefused(BlobRefused):
    """A blob URL (or where it redirects) the bot never downloads from: a host
    civitai.blob_hosts does not list, or plain http. Only the operator can fix it."""


class BlobTooLarge(BlobRefused):
    """A blob over the download cap (civitai.max_blob_bytes): refused on every try until the
    operator raises it."""


class BlobExpired(OrchestratorError):
    """A signed blob URL that no longer works (403/404/410): fetch the workflow for a new one."""


def operator_alert(exc: OrchestratorError) -> tuple[str, str]:
    """The operator alert (key: told once per kind, text) a refusal of the bot itself raises."""
    if isinstance(exc, NotFound):
        return "endpoint", (
            "the orchestrator has no workflows endpoint at the configured URL (404): check "
            "CIVITAI_BASE_URL (https://orchestration.civitai.com, without a path)"
        )
    if isinstance(exc, Unauthorized):
        return "auth", str(exc)
    return ("forbidden" if isinstance(exc, Forbidden) else "redirect"), str(exc)
