"""The orchestrator client: submit, get (long-poll), cancel; blob downloads and uploads are
in blob_calls.py.

Retryable failures (429, 5xx, timeouts, connection errors) are retried with capped exponential
backoff and jitter, honouring Retry-After. Submits are safe to retry because every template
carries an externalId. The token lives only in the Authorization header: never in a repr,
a log line or an exception's text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from bot import net
from bot.civitai.blob_calls import BlobCalls, retryable
from bot.civitai.errors import (
    Forbidden,
    NotFound,
    OrchestratorError,
    Redirected,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from bot.civitai.models import CreatedWorkflow, Workflow, WorkflowPage
from bot.civitai.shards import Shards
from bot.metrics import ERROR, OK, RETRY, Metrics

log = logging.getLogger(__name__)

WORKFLOWS = "/v2/consumer/workflows"
MAX_RETRY_AFTER = 600.0
# Answers that mean the request was not acted on: rate limited, or the service refused it.
NOT_ACCEPTED = frozenset({425, 429, 503})
# A whole answer (body included) may take this many read timeouts past its long-poll wait:
# httpx's timeout is per read, so an answer dripping a byte at a time would otherwise hold a
# job for ever (its deadline and a cancel are looked at only between calls).
WHOLE_ANSWER_TIMEOUTS = 4
# An upload's body gets time of its own on top, at this many bytes a second (a slow uplink).
UPLOAD_RATE = 64 * 1024
# The most of an answer read (decoded: a small gzip body can inflate to gigabytes). A workflow
# echoes its inputs, edit sources sent as data URLs included, so this is generous.
MAX_ANSWER_BYTES = 256 * 1024 * 1024


class OrchestratorClient(BlobCalls):
    def __init__(
        self,
        base_url: str,
        token: SecretStr | str | None,
        *,
        currencies: list[str] | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        retry_max_delay: float = 30.0,
        blob_hosts: list[str] | None = None,
        max_blob_bytes: int = 64 * 1024 * 1024,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        connections_per_pool: int = 32,
        metrics: Metrics | None = None,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else (token or "")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.currencies = list(currencies or [])
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_max_delay = retry_max_delay
        self.blob_hosts = [h.lower() for h in (blob_hosts or [])]
        self.max_blob_bytes = max_blob_bytes
        self.max_answer_bytes = max_answer_bytes
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Requests actually sent, by kind: the benchmarks read these.
        self.stats: Counter[str] = Counter()
        # Every HTTP attempt's outcome and latency (imagebot_orchestrator_*).
        self.metrics = metrics or Metrics()
        headers = {"Accept": "application/json"}
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        # Small pools, as many as the load needs (shards.py); every idle connection is kept, so
        # a job's next call and its result download (same host) reuse one.
        # One CA store (certifi's, as httpx uses by default) for all pools, not one each.
        tls = ssl.create_default_context(cafile=certifi.where())

        def pool() -> httpx.AsyncClient:
            return httpx.AsyncClient(
                verify=tls,
                base_url=self.base_url,
                headers=headers,
                timeout=timeout,
                transport=transport,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
                follow_redirects=False,
            )

        self._shards = Shards(pool, connections_per_pool)

    def __repr__(self) -> str:
        token = "***" if self._secret else None
        shown = net.without_credentials(self.base_url)
        return f"OrchestratorClient(base_url={shown!r}, token={token})"

    async def aclose(self) -> None:
        await self._shards.aclose()

    async def __aenter__(self) -> OrchestratorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- API --------------------------------------------------------------------------------
    def template(
        self, steps: list[dict[str, Any]], external_id: str, **extra: Any
    ) -> dict[str, Any]:
        """A WorkflowTemplate with the configured currencies and an idempotency key."""
        return {
            "steps": steps,
            "currencies": list(self.currencies),
            "externalId": external_id,
            **extra,
        }

    async def submit(
        self, template: dict[str, Any], *, wait: int = 0, whatif: bool = False
    ) -> Workflow:
        if not template.get("externalId"):
            raise ValueError("every submission needs an externalId (it makes retries safe)")
        body = {**template}
        body.setdefault("currencies", list(self.currencies))
        params: dict[str, Any] = {"wait": wait}
        if whatif:
            params["whatif"] = "true"
        kind = "whatif" if whatif else "submit"
        # A whatif creates nothing, so its answer may have no id.
        answer = Workflow if whatif else CreatedWorkflow
        return await self._request(
            kind, "POST", WORKFLOWS, params=params, json=body, wait=wait, answer=answer
        )

    async def get(self, workflow_id: str, *, wait: int = 0) -> Workflow:
        return await self._request(
            "get", "GET", f"{WORKFLOWS}/{workflow_id}", params={"wait": wait}, wait=wait
        )

    async def find_tagged(self, tag: str) -> Workflow | None:
        """QueryWorkflows by tag: the workflow submitted with `tag` (a lookup that, unlike a
        second submit, can never create one), None when there is none."""
        page: WorkflowPage = await self._request(
            "query", "GET", WORKFLOWS, params={"tags": [tag], "take": 1}, answer=WorkflowPage
        )
        return next((w for w in page.items if tag in (w.tags or [])), None)

    async def api_answers(self) -> bool:
        """Whether the API is at the base URL: QueryWorkflows (one item) answers, where a
        wrong base URL (a path the API is not at) answers 404."""
        try:
            await self._request("query", "GET", WORKFLOWS, params={"take": 1}, parse=False)
        except NotFound:
            return False
        return True

    async def cancel(self, workflow_id: str) -> None:
        await self._request(
            "cancel",
            "PUT",
            f"{WORKFLOWS}/{workflow_id}",
            json={"status": "canceled"},
            parse=False,
        )

    async def allow_mature(self, workflow_id: str) -> None:
        """UpdateWorkflow: lift the mature content restriction (withheld outputs come back)."""
        await self._request(
            "update",
            "PUT",
            f"{WORKFLOWS}/{workflow_id}",
            json={"allowMatureContent": True},
            parse=False,
        )

    # -- internals --------------------------------------------------------------------------
    async def _request(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        wait: int = 0,
        parse: bool = True,
        answer: type[BaseModel] = Workflow,
    ) -> Any:
        """Send, retrying what may pass; with `parse`, the answer as `answer` (a Workflow).

        The answer is read inside the retry loop: a body that is not the JSON the API
        documents (a proxy's error page, a cut-off answer) is retried like a 5xx.
        """
        attempt = 0
        maybe_accepted = False  # could any attempt have been acted on upstream?
        while True:
            retry_after: float | None = None
            started = time.monotonic()
            try:
                self.stats[kind] += 1
                with self._shards.use() as http:
                    request = http.build_request(
                        method,
                        path,
                        params=params,
                        json=json,
                        content=content,
                        headers=headers,
                        timeout=self.timeout + wait,
                    )
                    # The body's own time counts too: a submit with sources inline (data URLs,
                    # when uploads failed) can be tens of MB of JSON on a slow uplink.
                    upload = len(request.content) / UPLOAD_RATE
                    whole = self.timeout * WHOLE_ANSWER_TIMEOUTS + wait + upload
                    async with asyncio.timeout(whole):
                        response = await http.send(request, stream=True)
                        try:
                            body, over = await net.read_capped(
                                response.aiter_bytes(), self.max_answer_bytes
                            )
                        finally:
                            await response.aclose()
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problem = f"{kind}: cannot reach the orchestrator ({type(exc).__name__})"
            except (httpx.TimeoutException, TimeoutError):
                problem = f"{kind}: the orchestrator did not answer in time"
                maybe_accepted = True
            # DecodingError: a body whose gzip/deflate is broken (not a TransportError).
            except (httpx.TransportError, httpx.DecodingError) as exc:
                problem = f"{kind}: lost the orchestrator's answer ({type(exc).__name__})"
                maybe_accepted = True
            else:
                if 300 <= response.status_code < 400:
                    self._attempt(kind, ERROR, started)
                    to = urlsplit(response.headers.get("location", "")).hostname or "elsewhere"
                    refusal: OrchestratorError = Redirected(
                        f"the orchestrator redirected ({response.status_code}) to {to}: "
                        "check the Civitai base URL",
                        status=response.status_code,
                    )
                    refusal.maybe_accepted = maybe_accepted
                    raise refusal
                if response.status_code < 400 and over:
                    problem = f"{kind}: the answer is over the {self.max_answer_bytes:,} byte cap"
                    maybe_accepted = True
                elif response.status_code < 400:
                    try:
                        parsed = answer.model_validate_json(body) if parse else None
                    except ValidationError:
                        workflow = issubclass(answer, Workflow)
                        what = "a workflow" if workflow else f"a {answer.__name__}"
                        problem = f"{kind}: the orchestrator's answer is not {what}"
                        maybe_accepted = True
                    else:
                        self._attempt(kind, OK, started)
                        return parsed
                elif not retryable(response.status_code):
                    self._attempt(kind, ERROR, started)
                    refusal = self._error(response.status_code, body.decode("utf-8", "replace"))
                    refusal.maybe_accepted = maybe_accepted  # an earlier attempt's answer lost
                    raise refusal
                else:
                    problem = f"{kind}: orchestrator answered {response.status_code}"
                    retry_after = net.retry_after(response.headers.get("retry-after"))
                    accepted = response.status_code not in NOT_ACCEPTED
                    maybe_accepted = maybe_accepted or accepted
            self._attempt(kind, ERROR if attempt >= self.max_retries else RETRY, started)
            if attempt >= self.max_retries:
                raise Unavailable(
                    self._redact(f"{problem}; gave up after {attempt + 1} tries"),
                    maybe_accepted=maybe_accepted,
                )
            delay = self._backoff(attempt, retry_after)
            log.warning("%s; retrying in %.1fs (try %d)", self._redact(problem), delay, attempt + 2)
            await self._sleep(delay)
            attempt += 1

    def _attempt(self, kind: str, outcome: str, started: float) -> None:
        self.metrics.orchestrator_attempt(kind, outcome, time.monotonic() - started)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return net.backoff(
            attempt,
            retry_after,
            max_delay=self.retry_max_delay,
            max_retry_after=MAX_RETRY_AFTER,
            rng=self._rng,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, status: int, body: str) -> OrchestratorError:
        body = self._redact(body)
        detail, fields = _problem(body)
        if status == 400:
            listed = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
            return ValidationFailed(f"orchestrator refused the request: {listed or detail}", fields)
        if status == 401:
            return Unauthorized("the orchestrator refused the API token (401)")
        if status == 403:
            return Forbidden(f"the orchestrator refused (403): {detail or 'forbidden'}")
        if status == 404:
            return NotFound(f"not found on the orchestrator: {detail or 'no such workflow'}")
        return OrchestratorError(f"orchestrator answered {status}: {detail}", status=status)


def _problem(body: str) -> tuple[str, dict[str, list[str]]]:
    """(detail, field errors) from ProblemDetails / ValidationProblemDetails, or plain text."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # nested deeper than the parser goes: not JSON
        return body.strip()[:300], {}
    if not isinstance(data, dict):
        return str(data)[:300], {}
    fields = {
        str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
        for k, v in (data.get("errors") or {}).items()
    }
    detail = data.get("detail") or data.get("title") or ""
    return str(detail)[:300], fields
