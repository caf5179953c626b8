"""Typed errors of the OpenAI lane. Their text never carries the API key.

What the engine does with each:
- Blocked: the request was refused by moderation (nothing generated, nothing charged): the job
  goes to the review queue.
- ModelUnavailable: the endpoint does not serve this model (not found, shut down, deprecated):
  disable it.
- OperatorProblem (AuthFailed, QuotaExhausted, or a wrong base URL): not the member's fault; tell
  the operator, refund the member.
- InvalidRequest: the endpoint refused a parameter (`param` names it): a bug or a catalog gap.
- BadResponse: the endpoint answered 200 with something unusable (not JSON, no image, invalid
  base64, an image over the byte cap). Generation may have happened upstream.
- Unavailable: 429/5xx/timeouts/broken streams that outlasted every retry.
"""

from __future__ import annotations


class OpenAIError(Exception):
    status: int | None = None
    # Raised mid-stream after output (previews or images) came: the call ran upstream, billed.
    streamed_output: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class Blocked(OpenAIError):
    """400 `moderation_blocked` (GPT image models) or `content_policy_violation` (dall-e)."""

    def __init__(self, message: str, *, code: str, status: int | None = 400) -> None:
        super().__init__(message, status=status)
        self.code = code


class ModelUnavailable(OpenAIError):
    """The endpoint does not serve `model` (any more): the bot should disable it."""

    def __init__(
        self, message: str, *, model: str | None, code: str | None, status: int | None
    ) -> None:
        super().__init__(message, status=status)
        self.model = model
        self.code = code


class OperatorProblem(OpenAIError):
    """Something only the operator can fix: the key, the account, or the base URL."""


class AuthFailed(OperatorProblem):
    """401 (key missing, wrong or revoked) or 403 (no access: region, organisation not verified
    for the model, or the key's permissions)."""


class QuotaExhausted(OperatorProblem):
    """429 `insufficient_quota`: the account is out of credit; retrying cannot help."""

    status = 429


class InvalidRequest(OpenAIError):
    """A 4xx the lane did not expect; `param` names the refused field when the endpoint says."""

    def __init__(
        self, message: str, *, param: str | None, code: str | None, status: int | None = 400
    ) -> None:
        super().__init__(message, status=status)
        self.param = param
        self.code = code


class BadResponse(OpenAIError):
    """A 200 whose content cannot be used. The request was acted on upstream (maybe charged)."""

    maybe_accepted = True


class Unavailable(OpenAIError):
    """429/5xx/timeouts/connection errors/broken streams that outlasted every retry.

    `maybe_accepted` is False only when no attempt could have been acted on upstream (the
    connection never opened, or the answer was 429/503): then surely nothing was generated.
    """

    def __init__(
        self,
        message: str,
        *,
        maybe_accepted: bool = True,
        produced: int = 0,
        untold: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.maybe_accepted = maybe_accepted
        # Tries that streamed output before failing: run, and billed, upstream.
        self.produced = produced
        # Whether a try not told to the caller's `on_lost` as it failed (the last one, or one
        # that streamed nothing) may have been acted on: the caller records it.
        self.untold = maybe_accepted if untold is None else untold
