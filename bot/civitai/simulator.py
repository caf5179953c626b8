"""A loopback orchestrator: the same HTTP API, placeholder images, scripted outcomes.

Used by the tests and by the bot itself when no CIVITAI_TOKEN is set. It speaks
POST/GET/PUT /v2/consumer/workflows with `wait` (long-poll) and `whatif`, Bearer auth, the
schema's validation (400 ValidationProblemDetails), `externalId` idempotency (a whatif with an
externalId claims it too, as the real API documents), and signed, expiring blob URLs.

A workflow's life is computed from the clock, not driven by tasks: unassigned → scheduled →
processing → its outcome, with runtimes drawn from the guide's table times `speed`. `wait` is
scaled by `speed` too, so a time-scaled run keeps the real API's proportions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.catalog.inputs import ImageGenInput, input_model
from bot.catalog.names import Model, Operation
from bot.catalog.request import price_input
from bot.catalog.sizes import parse_size
from bot.civitai.models import WorkflowStatus
from bot.civitai.placeholder import CONTENT_TYPES, data_url_size, render
from bot.civitai.schema import OpenApiDocument

log = logging.getLogger(__name__)

S = WorkflowStatus
TERMINAL = {S.SUCCEEDED, S.FAILED, S.EXPIRED, S.CANCELED}
# The guide's per-image wall times (seconds), by model and quality.
RUNTIMES: dict[str, tuple[float, float]] = {
    "dall-e-2": (3, 8),
    "dall-e-3": (10, 20),
    "dall-e-3/hd": (15, 40),
    "gpt-image-1": (10, 30),
    "gpt-image-1.5": (10, 30),
    "gpt-image-2": (15, 45),
}
OUTCOMES = (
    "succeed",
    "fail",
    "block",
    "block_charged",
    "expire",
    "never",
    "blob_blocked",
    "output_errors",
)
# Outcomes whose charge is refunded when the workflow ends.
REFUNDED = {"fail", "block", "expire", "output_errors"}
USER_ID = "sim"


@dataclass(frozen=True)
class Outcome:
    """How a simulated workflow ends. `runtime` (real seconds, before speed) overrides the draw;
    `charge` overrides what is debited (to test charges above the estimate)."""

    kind: str = "succeed"
    runtime: float | None = None
    charge: int | None = None
    # Output images (by index) whose content the blob store never serves (503 for ever).
    unavailable_blobs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.kind!r}: one of {', '.join(OUTCOMES)}")


@dataclass
class Fault:
    """A scripted misbehaviour of one route: an error status, a 200 with a broken body, or an
    answer that is lost after the request was acted on."""

    status: int
    times: int
    retry_after: float | None = None
    route: str | None = None
    # Sent as it is (with `status`) instead of a problem document: garbage, malformed JSON.
    body: bytes | None = None
    # Act on the request, then drop the connection without answering (a lost answer).
    lose: bool = False
    # A monotonic time until which the fault holds, however many requests come (a burst).
    until: float | None = None

    def active(self, now: float) -> bool:
        return self.times > 0 and (self.until is None or now < self.until)


@dataclass
class SimWorkflow:
    id: str
    external_id: str | None
    template: dict[str, Any]
    inp: ImageGenInput
    price: int
    outcome: Outcome
    created: datetime
    t0: float
    t_scheduled: float
    t_processing: float
    t_done: float
    width: int
    height: int
    canceled_at: float | None = None
    canceled_phase: WorkflowStatus | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def status(self, now: float) -> WorkflowStatus:
        if self.canceled_at is not None and now >= self.canceled_at:
            return S.CANCELED
        if now < self.t_scheduled:
            return S.UNASSIGNED
        if now < self.t_processing:
            return S.SCHEDULED
        if now < self.t_done or self.outcome.kind == "never":
            return S.PROCESSING
        if self.outcome.kind in ("succeed", "blob_blocked"):
            return S.SUCCEEDED
        if self.outcome.kind == "expire":
            return S.EXPIRED
        return S.FAILED

    def notify(self) -> None:
        """Wake every long-poll waiting on this workflow (each waits on the event it saw)."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def finished_at(self) -> float:
        if self.canceled_at is not None:
            return self.canceled_at
        return self.t_done

    def net_charge(self, now: float) -> int:
        debit, credit = self._transactions(now)
        return debit - credit

    def _transactions(self, now: float) -> tuple[int, int]:
        debit = self.price if self.outcome.charge is None else self.outcome.charge
        status = self.status(now)
        refunded = (status == S.CANCELED and self.canceled_phase != S.PROCESSING) or (
            status in TERMINAL and status != S.CANCELED and self.outcome.kind in REFUNDED
        )
        return debit, debit if refunded else 0


class Simulator:
    def __init__(
        self,
        *,
        token: str = "sim-token",
        speed: float = 1.0,
        seed: int | None = None,
        blob_ttl: float = 3600.0,
        surcharge: int = 0,
        max_image_side: int | None = None,
        document: OpenApiDocument | None = None,
    ) -> None:
        # Load tests cap the placeholder images so rendering does not dominate the run.
        self.max_image_side = max_image_side
        self.token = token
        # Added to every price, like the guide's "priority / output-format surcharges".
        self.surcharge = surcharge
        self.speed = speed
        self.blob_ttl = blob_ttl
        self._rng = random.Random(seed)
        self._doc = document or OpenApiDocument.load()
        self._key = secrets.token_bytes(32)
        self.workflows: dict[str, SimWorkflow] = {}
        self._by_external: dict[str, dict[str, Any] | SimWorkflow] = {}
        self._scripted: list[Outcome] = []
        self._keyed: dict[str, Outcome] = {}
        self._faults: list[Fault] = []
        self._images: OrderedDict[str, bytes] = OrderedDict()
        self.submissions: list[dict[str, Any]] = []
        self.requests: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_lose_answers])
        app.router.add_post("/v2/consumer/workflows", self._submit)
        app.router.add_get("/v2/consumer/workflows/{id}", self._get)
        app.router.add_put("/v2/consumer/workflows/{id}", self._update)
        app.router.add_get("/v2/consumer/blobs/content/{token}", self._blob_content)
        app.router.add_get("/v2/consumer/blobs/{id}", self._blob)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            for wf in self.workflows.values():
                wf.notify()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting (tests) -------------------------------------------------------------------
    def script(
        self, outcome: Outcome | str, *, external_id: str | None = None, prompt: str | None = None
    ) -> None:
        """Decide how a future workflow ends: by externalId, by prompt text, or the next one."""
        outcome = Outcome(outcome) if isinstance(outcome, str) else outcome
        if external_id is not None:
            self._keyed[f"id:{external_id}"] = outcome
        elif prompt is not None:
            self._keyed[f"prompt:{prompt}"] = outcome
        else:
            self._scripted.append(outcome)

    def fault(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        route: str | None = None,
        body: bytes | None = None,
        seconds: float | None = None,
    ) -> None:
        """Answer the next `times` requests (of `route`: submit/get/cancel/blob) with `status`
        (and `body` as it is, when given: a 200 that is not JSON or not an image). With
        `seconds`, every request for that long (real seconds, not scaled) instead."""
        until = None if seconds is None else time.monotonic() + seconds
        count = 1_000_000_000 if seconds is not None else times
        self._faults.append(Fault(status, count, retry_after, route, body, until=until))

    def lose_answer(self, *, route: str = "submit", times: int = 1) -> None:
        """Act on the next `times` requests of `route`, then drop the connection unanswered:
        the client cannot know whether its request took effect."""
        self._faults.append(Fault(0, times, route=route, lose=True))

    def charged_total(self) -> int:
        now = time.monotonic()
        return sum(wf.net_charge(now) for wf in self.workflows.values())

    def workflow_for(self, external_id: str) -> SimWorkflow | None:
        found = self._by_external.get(external_id)
        return found if isinstance(found, SimWorkflow) else None

    # -- HTTP handlers -----------------------------------------------------------------------
    async def _submit(self, request: web.Request) -> web.Response:
        if (early := self._gate(request, "submit")) is not None:
            return early
        try:
            template = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _problem(400, "the body is not JSON")
        whatif = request.query.get("whatif", "false").lower() == "true"
        errors = self._doc.validate_template(template)
        if not errors:
            errors = self._guide_rules(template)
        if errors:
            return _validation_problem(errors)
        external_id = template.get("externalId")
        if external_id and external_id in self._by_external:
            existing = self._by_external[external_id]
            if isinstance(existing, dict):  # an earlier whatif claimed this id
                return _json(200, existing)
            return await self._answer(existing, _wait(request), self.speed)
        step_input = template["steps"][0]["input"]
        try:
            inp, size, price = self._parse_input(step_input)
        except ValidationError as exc:
            return _validation_problem(
                [(f"steps[0].input.{'.'.join(map(str, e['loc']))}", e["msg"]) for e in exc.errors()]
            )
        if whatif:
            estimate = self._whatif_json(template, price)
            if external_id:
                self._by_external[external_id] = estimate
            return _json(200, estimate)
        wf = self._create(template, inp, size, price)
        self.submissions.append(template)
        if external_id:
            self._by_external[external_id] = wf
        return await self._answer(wf, _wait(request), self.speed)

    async def _get(self, request: web.Request) -> web.Response:
        if (early := self._gate(request, "get")) is not None:
            return early
        wf = self.workflows.get(request.match_info["id"])
        if wf is None:
            return _problem(404, "workflow not found")
        return await self._answer(wf, _wait(request), self.speed)

    async def _update(self, request: web.Request) -> web.Response:
        if (early := self._gate(request, "cancel")) is not None:
            return early
        wf = self.workflows.get(request.match_info["id"])
        if wf is None:
            return _problem(404, "workflow not found")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _problem(400, "the body is not JSON")
        if body.get("status") != "canceled":
            return _validation_problem([("status", "status must be canceled")])
        now = time.monotonic()
        status = wf.status(now)
        if status not in TERMINAL:
            wf.canceled_phase = status
            wf.canceled_at = now
            wf.notify()
        return web.Response(status=204)

    async def _blob(self, request: web.Request) -> web.Response:
        if (early := self._gate(request, "blob")) is not None:
            return early
        blob_id = request.match_info["id"]
        if self._blob_source(blob_id) is None:
            return _problem(404, "blob not found")
        raise web.HTTPPermanentRedirect(self._content_url(blob_id))

    async def _blob_content(self, request: web.Request) -> web.Response:
        self.requests["blob"] += 1
        if (fault := self._take_fault("blob")) is not None:
            return _fault_response(fault)
        blob_id = self._verify(request.match_info["token"])
        if blob_id is None:
            return _problem(403, "the blob URL is invalid or has expired")
        source = self._blob_source(blob_id)
        if source is None:
            return _problem(404, "blob not found")
        wf, index = source
        if index in wf.outcome.unavailable_blobs:
            return _problem(503, "the blob store cannot serve this blob")
        fmt = wf.inp.output_format or "jpeg"
        data = self._image(blob_id, wf, index, fmt)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPES[fmt]})

    # -- internals ---------------------------------------------------------------------------
    def _gate(self, request: web.Request, route: str) -> web.Response | None:
        self.requests[route] += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _problem(401, "Unauthorized")
        fault = self._take_fault(route)
        if fault is not None and fault.lose:
            request[LOSE] = True  # the handler acts, the middleware drops the answer
            return None
        return _fault_response(fault) if fault is not None else None

    def _take_fault(self, route: str) -> Fault | None:
        now = time.monotonic()
        self._faults = [f for f in self._faults if f.active(now)]
        for fault in self._faults:
            if fault.route in (None, route):
                fault.times -= 1
                return fault
        return None

    def _guide_rules(self, template: dict[str, Any]) -> list[tuple[str, str]]:
        """The guide's rules the schema does not state: gpt-image-2 sides are multiples of 16."""
        errors = []
        for i, step in enumerate(template["steps"]):
            inp = step.get("input", {})
            if inp.get("model") != "gpt-image-2":
                continue
            for side in ("width", "height"):
                value = inp.get(side)
                if isinstance(value, int) and value % 16:
                    errors.append((f"steps[{i}].input.{side}", f"{side} must be a multiple of 16"))
        return errors

    def _parse_input(self, raw: dict[str, Any]) -> tuple[ImageGenInput, tuple[int, int], int]:
        cls = input_model(Model(raw["model"]), Operation(raw["operation"]))
        assert cls is not None  # the schema's discriminators already checked the pair
        inp = cls.model_validate(raw)
        size = self._output_size(inp)
        return inp, size, price_input(inp, size) + self.surcharge

    def _output_size(self, inp: ImageGenInput) -> tuple[int, int]:
        width, height = getattr(inp, "width", None), getattr(inp, "height", None)
        if width and height:
            return width, height
        parsed = parse_size(getattr(inp, "size", None) or "")
        if parsed:
            return parsed
        sources = getattr(inp, "images", None) or [getattr(inp, "image", "")]
        return (data_url_size(sources[0]) if sources[0] else None) or (1024, 1024)

    def _pick_outcome(self, template: dict[str, Any], prompt: str) -> Outcome:
        external_id = template.get("externalId")
        if external_id and f"id:{external_id}" in self._keyed:
            return self._keyed.pop(f"id:{external_id}")
        for key, outcome in self._keyed.items():
            if key.startswith("prompt:") and key[len("prompt:") :] in prompt:
                return outcome
        if self._scripted:
            return self._scripted.pop(0)
        for kind in OUTCOMES:  # a prompt marker such as [sim:block], for demos by hand
            if f"[sim:{kind}]" in prompt:
                return Outcome(kind)
        return Outcome()

    def _create(
        self, template: dict[str, Any], inp: ImageGenInput, size: tuple[int, int], price: int
    ) -> SimWorkflow:
        outcome = self._pick_outcome(template, getattr(inp, "prompt", ""))
        quality = getattr(inp, "quality", "")
        key = f"{inp.MODEL.value}/hd" if quality == "hd" else inp.MODEL.value
        low, high = RUNTIMES[key]
        quantity = getattr(inp, "quantity", 1)
        runtime = outcome.runtime
        if runtime is None:
            runtime = sum(self._rng.uniform(low, high) for _ in range(quantity))
        now = time.monotonic()
        t_scheduled = now + 0.2 * self.speed
        t_processing = t_scheduled + self._rng.uniform(0.5, 2.0) * self.speed
        wf = SimWorkflow(
            id=f"wf_{secrets.token_hex(8)}",
            external_id=template.get("externalId"),
            template=template,
            inp=inp,
            price=price,
            outcome=outcome,
            created=datetime.now(UTC),
            t0=now,
            t_scheduled=t_scheduled,
            t_processing=t_processing,
            t_done=t_processing + runtime * self.speed,
            width=size[0],
            height=size[1],
        )
        self.workflows[wf.id] = wf
        return wf

    async def _answer(self, wf: SimWorkflow, wait: float, speed: float) -> web.Response:
        """Long-poll: answer when the workflow ends or `wait` (scaled) runs out."""
        if wait > 0:
            deadline = time.monotonic() + min(wait, 300) * speed
            while wf.status(time.monotonic()) not in TERMINAL:
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    break
                ends_in = wf.t_done - now if wf.outcome.kind != "never" else remaining
                changed = wf.changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        changed.wait(), timeout=max(0.0, min(remaining, ends_in))
                    )
                if self._runner is None:
                    break
        now = time.monotonic()
        done = wf.status(now) in TERMINAL
        return _json(200 if done or wait <= 0 else 202, self._workflow_json(wf, now))

    def _whatif_json(self, template: dict[str, Any], price: int) -> dict[str, Any]:
        return {
            "id": None,
            "createdAt": _iso(datetime.now(UTC)),
            "status": S.UNASSIGNED.value,
            "steps": [],
            "cost": {"base": price, "total": price, "tips": {"civitai": 0, "creators": 0}},
            "transactions": {"list": [], "insufficientBuzz": False},
            "externalId": _stored_external(template.get("externalId")),
            "metadata": {},
            "tags": [],
            "arguments": {},
            "callbacks": [],
            "tips": {"civitai": 0, "creators": 0},
            "currencies": template.get("currencies", []),
            "upgradeMode": "manual",
            "forceRefunded": False,
        }

    def _workflow_json(self, wf: SimWorkflow, now: float) -> dict[str, Any]:
        status = wf.status(now)

        def at(t: float) -> str:
            return _iso(wf.created + timedelta(seconds=t - wf.t0))

        started = at(wf.t_processing) if now >= wf.t_processing else None
        completed = at(wf.finished_at()) if status in TERMINAL else None
        job: dict[str, Any] = {
            "id": f"{wf.id}-job0",
            "status": status.value,
            "cost": float(wf.price),
            "startedAt": started,
            "completedAt": completed,
        }
        if status == S.SCHEDULED:
            ahead = sum(
                1
                for other in self.workflows.values()
                if other.t_processing < wf.t_processing and other.status(now) == S.SCHEDULED
            )
            job["queuePosition"] = {
                "support": "available",
                "precedingJobs": ahead,
                "startAt": at(wf.t_processing),
                "completeAt": at(wf.t_done),
            }
        if status == S.FAILED and wf.outcome.kind in ("block", "block_charged"):
            job["reason"] = "blocked"
        output: dict[str, Any] | None = None
        if status == S.SUCCEEDED:
            output = {"images": [self._blob_json(wf, i) for i in range(self._count(wf))]}
        elif status == S.FAILED and wf.outcome.kind == "output_errors":
            output = {"images": [], "errors": ["blocked: the prompt was refused by moderation"]}
        debit, credit = wf._transactions(now)
        account = (wf.template.get("currencies") or ["yellow"])[0]
        transactions = [
            {"type": "debit", "amount": debit, "id": f"{wf.id}-d", "accountType": account}
        ]
        if credit:
            transactions.append(
                {"type": "credit", "amount": credit, "id": f"{wf.id}-c", "accountType": account}
            )
        step: dict[str, Any] = {
            "$type": "imageGen",
            "name": "0",
            "priority": "normal",
            "status": status.value,
            "metadata": {},
            "input": wf.template["steps"][0]["input"],
            "jobs": [job],
            "startedAt": started,
            "completedAt": completed,
        }
        if output is not None:
            step["output"] = output
        if status == S.PROCESSING and wf.outcome.kind != "never":
            span = max(1e-9, wf.t_done - wf.t_processing)
            step["estimatedProgressRate"] = round(min(1.0, (now - wf.t_processing) / span), 3)
        return {
            "id": wf.id,
            "createdAt": _iso(wf.created),
            "status": status.value,
            "startedAt": started,
            "completedAt": completed,
            "steps": [step],
            "cost": {"base": wf.price, "total": wf.price, "tips": {"civitai": 0, "creators": 0}},
            "transactions": {"list": transactions},
            "externalId": _stored_external(wf.external_id),
            "metadata": {},
            "tags": [],
            "arguments": {},
            "callbacks": [],
            "tips": {"civitai": 0, "creators": 0},
            "currencies": wf.template.get("currencies", []),
            "upgradeMode": "manual",
            "forceRefunded": False,
        }

    def _count(self, wf: SimWorkflow) -> int:
        return int(getattr(wf.inp, "quantity", 1))

    def _blob_json(self, wf: SimWorkflow, index: int) -> dict[str, Any]:
        blob_id = f"{wf.id}-{index}"
        expires = datetime.now(UTC) + timedelta(seconds=self.blob_ttl)
        blob: dict[str, Any] = {
            "type": "image",
            "id": blob_id,
            "available": True,
            "url": self._content_url(blob_id),
            "urlExpiresAt": _iso(expires),
            "jobId": f"{wf.id}-job0",
            "width": wf.width,
            "height": wf.height,
        }
        if wf.outcome.kind == "blob_blocked":
            blob.update(available=False, url=None, blockedReason="nsfw")
        return blob

    def _blob_source(self, blob_id: str) -> tuple[SimWorkflow, int] | None:
        wf_id, _, index = blob_id.rpartition("-")
        wf = self.workflows.get(wf_id)
        if wf is None or not index.isdigit() or int(index) >= self._count(wf):
            return None
        if wf.status(time.monotonic()) != S.SUCCEEDED or wf.outcome.kind == "blob_blocked":
            return None
        return wf, int(index)

    def _content_url(self, blob_id: str) -> str:
        expires = int(time.time() + self.blob_ttl)
        payload = base64.urlsafe_b64encode(f"{blob_id}.{expires}".encode()).decode().rstrip("=")
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{self.base_url}/v2/consumer/blobs/content/{payload}.{mac}"

    def _verify(self, token: str) -> str | None:
        payload, _, mac = token.rpartition(".")
        good = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:24]
        if not payload or not hmac.compare_digest(mac, good):
            return None
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        blob_id, _, expires = text.rpartition(".")
        return blob_id if int(expires) >= time.time() else None

    def _image(self, blob_id: str, wf: SimWorkflow, index: int, fmt: str) -> bytes:
        if blob_id in self._images:
            self._images.move_to_end(blob_id)
            return self._images[blob_id]
        caption = f"{wf.inp.MODEL.value} · {wf.width}x{wf.height} · {index + 1}/{self._count(wf)}"
        width, height = wf.width, wf.height
        if self.max_image_side:
            scale = min(1.0, self.max_image_side / max(width, height))
            width, height = max(1, int(width * scale)), max(1, int(height * scale))
        data = render(getattr(wf.inp, "prompt", ""), width, height, fmt, caption)
        self._images[blob_id] = data
        while len(self._images) > 64:
            self._images.popitem(last=False)
        return data


LOSE = web.RequestKey("sim.lose_answer", bool)


@web.middleware
async def _lose_answers(request: web.Request, handler: Any) -> web.StreamResponse:
    """A request marked by `lose_answer` has been acted on; its answer never arrives."""
    response = await handler(request)
    if request.get(LOSE) and request.transport is not None:
        request.transport.abort()
    return response


def _wait(request: web.Request) -> float:
    try:
        return max(0.0, float(request.query.get("wait", "0")))
    except ValueError:
        return 0.0


def _stored_external(external_id: str | None) -> str | None:
    # The API stores the key as "{userId}-{clientValue}"; clients must not expect it back verbatim.
    return f"{USER_ID}-{external_id}" if external_id else None


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def _problem(status: int, detail: str) -> web.Response:
    titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    body = {"type": None, "title": titles.get(status, "Error"), "status": status, "detail": detail}
    return _json(status, body)


def _validation_problem(errors: list[Any]) -> web.Response:
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
    return _json(400, body)


def _fault_response(fault: Fault) -> web.Response:
    if fault.body is not None:
        return web.Response(
            status=fault.status, body=fault.body, headers={"Content-Type": "application/json"}
        )
    if fault.status == 400:
        return _validation_problem([("body", "scripted validation failure")])
    response = _problem(fault.status, f"simulated {fault.status}")
    if fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    return response
