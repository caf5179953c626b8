"""The Simulator: its state, its lifecycle, what tests script, and how a workflow is made."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.civitai.schema import OpenApiDocument
from bot.civitai.simulator import sources
from bot.civitai.simulator.blob_routes import BlobRoutes
from bot.civitai.simulator.blobs import BlobRecord, BlobStore
from bot.civitai.simulator.responses import (
    LOSE,
    fault_response,
    json_response,
    lose_answers,
    problem,
)
from bot.civitai.simulator.scripting import Fault, Outcome, Script, nsfw_marker
from bot.civitai.simulator.steps import PLANNERS, Source, StepPlan, StepRefused
from bot.civitai.simulator.views import workflow_json
from bot.civitai.simulator.workflow import TERMINAL, SimStep, SimWorkflow, WorkflowStatus
from bot.civitai.simulator.workflow_routes import WorkflowRoutes

log = logging.getLogger(__name__)

S = WorkflowStatus


def retired(step: dict[str, Any], models: set[str]) -> str | None:
    """The retired model (or step type) a step asks for, if any."""
    model = (step.get("input") or {}).get("model")
    if isinstance(model, str) and model in models:
        return model
    return step["$type"] if step["$type"] in models else None


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
        self.token = token
        # Added to every imageGen price, like the guide's "priority / output-format surcharges".
        self.surcharge = surcharge
        self.speed = speed
        # The rating uploads get from the simulated "on-the-fly moderation".
        self.upload_nsfw_level = "pg"
        self.document = document or OpenApiDocument.load()
        self.blobs = BlobStore(ttl=blob_ttl, max_image_side=max_image_side)
        self.workflows: dict[str, SimWorkflow] = {}
        self.submissions: list[dict[str, Any]] = []
        # Ids of the blobs uploaded, in order.
        self.uploads: list[str] = []
        self.requests: Counter[str] = Counter()
        self.base_url = ""
        self._rng = random.Random(seed)
        self._script = Script()
        self._faults = self._script.faults  # the same list: tests may clear it
        self._by_external: dict[str, dict[str, Any] | SimWorkflow] = {}
        self._runner: web.AppRunner | None = None
        # Models (an imageGen `model`, or a step type) the orchestrator no longer runs: a
        # submit or whatif naming one is refused with a 400 that says so.
        self.retired_models: set[str] = set()
        # Models no worker supports any more: accepted, then queued for ever (support
        # "unsupported" in the job's queue position) until canceled.
        self.unsupported_models: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[lose_answers])
        WorkflowRoutes(self).register(app)
        BlobRoutes(self).register(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = self.blobs.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            for wf in self.workflows.values():
                wf.notify()
            await self._runner.cleanup()
            self._runner = None

    @property
    def blob_ttl(self) -> float:
        """Seconds a signed blob URL stays valid (changeable while running)."""
        return self.blobs.ttl

    @blob_ttl.setter
    def blob_ttl(self, seconds: float) -> None:
        self.blobs.ttl = seconds

    @property
    def max_image_side(self) -> int | None:
        """Load tests cap the drawn placeholders (blobs still report their full size)."""
        return self.blobs.max_image_side

    @max_image_side.setter
    def max_image_side(self, side: int | None) -> None:
        self.blobs.max_image_side = side

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
        self._script.add(outcome, external_id=external_id, prompt=prompt)

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
        """Answer the next `times` requests (of `route`: submit/get/cancel/blob/upload/refresh)
        with `status` (and `body` as it is, when given: a 200 that is not JSON or not an image).
        With `seconds`, every request for that long (real seconds, not scaled) instead."""
        until = None if seconds is None else time.monotonic() + seconds
        count = 1_000_000_000 if seconds is not None else times
        self._script.add_fault(Fault(status, count, retry_after, route, body, until=until))

    def lose_answer(self, *, route: str = "submit", times: int = 1) -> None:
        """Act on the next `times` requests of `route`, then drop the connection unanswered:
        the client cannot know whether its request took effect."""
        self._script.add_fault(Fault(0, times, route=route, lose=True))

    def charged_total(self) -> int:
        now = time.monotonic()
        return sum(wf.net_charge(now) for wf in self.workflows.values())

    def workflow_for(self, external_id: str) -> SimWorkflow | None:
        found = self._by_external.get(external_id)
        return found if isinstance(found, SimWorkflow) else None

    # -- for the routes ----------------------------------------------------------------------
    def gate(self, request: web.Request, route: str, *, auth: bool = True) -> web.Response | None:
        """Count the request, check the token, and apply any fault scripted for `route`."""
        self.requests[route] += 1
        if auth and request.headers.get("Authorization") != f"Bearer {self.token}":
            return problem(401, "Unauthorized")
        fault = self._script.take_fault(route)
        if fault is not None and fault.lose:
            request[LOSE] = True  # the handler acts, the middleware drops the answer
            return None
        return fault_response(fault) if fault is not None else None

    def claimed(self, external_id: str | None) -> dict[str, Any] | SimWorkflow | None:
        return self._by_external.get(external_id) if external_id else None

    def claim(self, external_id: str | None, what: dict[str, Any] | SimWorkflow) -> None:
        if external_id:
            self._by_external[external_id] = what

    def plan(self, template: dict[str, Any]) -> list[StepPlan]:
        """Each step's plan; StepRefused errors carry paths from the template's root."""
        plans, errors = [], []
        for i, step in enumerate(template["steps"]):
            planner = PLANNERS.get(step["$type"])
            gone = retired(step, self.retired_models)
            if gone is not None:
                errors.append(
                    (f"steps[{i}].input.model", f"{gone} is retired: no longer available")
                )
                continue
            if planner is None:
                errors.append((f"steps[{i}].$type", f"{step['$type']} is not simulated"))
                continue
            try:
                plans.append(planner(step["input"], self))
            except StepRefused as exc:
                errors += [(f"steps[{i}].input.{path}", msg) for path, msg in exc.errors]
        if errors:
            raise StepRefused(errors)
        return plans

    def create(self, template: dict[str, Any], plans: list[StepPlan]) -> SimWorkflow:
        prompt = " ".join(p.prompt for p in plans if p.prompt)
        marked = " ".join(p.prompt for p in plans if p.prompt and p.makes_images)
        types = {step["$type"] for step in template["steps"]}
        makes_images = any(p.makes_images for p in plans)
        outcome = self._script.pick(template.get("externalId"), prompt, marked, types, makes_images)
        runtime = outcome.runtime
        if runtime is None:
            runtime = sum(self._rng.uniform(*p.runtime) for p in plans for _ in range(p.units))
        now = time.monotonic()
        t_scheduled = now + 0.2 * self.speed
        t_processing = t_scheduled + self._rng.uniform(0.5, 2.0) * self.speed
        wf_id = f"wf_{secrets.token_hex(8)}"
        steps, n = [], 0
        for i, (raw, plan) in enumerate(zip(template["steps"], plans, strict=True)):
            ids = [f"{wf_id}-{n + k}" for k in range(len(plan.blobs))]
            n += len(ids)
            steps.append(SimStep(i, raw["$type"], raw.get("name") or str(i), raw, plan, ids))
        currencies = template.get("currencies") or []
        wf = SimWorkflow(
            id=wf_id,
            external_id=template.get("externalId"),
            template=template,
            steps=steps,
            price=sum(p.price for p in plans),
            outcome=outcome,
            created=datetime.now(UTC),
            t0=now,
            t_scheduled=t_scheduled,
            t_processing=t_processing,
            t_done=t_processing + runtime * self.speed,
            account=currencies[0] if currencies else "yellow",
            allow_mature=template.get("allowMatureContent"),
            upgrade_mode=template.get("upgradeMode") or "manual",
            rating=outcome.nsfw_level or nsfw_marker(marked),
            unsupported=any(retired(s, self.unsupported_models) for s in template["steps"]),
        )
        for step in steps:
            for i, (blob_id, blob) in enumerate(zip(step.blob_ids, step.plan.blobs, strict=True)):
                self.blobs.add(
                    BlobRecord(
                        blob_id,
                        blob.width,
                        blob.height,
                        blob.fmt,
                        render=blob.render,
                        nsfw_level=wf.blob_rating(step, i),
                        owner=(wf.id, step.index, i),
                    )
                )
        self.workflows[wf.id] = wf
        self.submissions.append(template)
        return wf

    async def answer(
        self, wf: SimWorkflow, wait: float, *, hide_mature: bool = False
    ) -> web.Response:
        """Long-poll: answer when the workflow ends or `wait` (scaled) runs out."""
        if wait > 0:
            deadline = time.monotonic() + min(wait, 300) * self.speed
            while wf.status(time.monotonic()) not in TERMINAL:
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    break
                waits = wf.outcome.kind == "never" or wf.unsupported
                ends_in = remaining if waits else wf.t_done - now
                changed = wf.changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        changed.wait(), timeout=max(0.0, min(remaining, ends_in))
                    )
                if self._runner is None:
                    break
        now = time.monotonic()
        status = wf.status(now)
        done = status in TERMINAL
        # The queue position is shown only while scheduled: counting it means a pass over every
        # workflow, which for thousands of answers at once made the simulator the bottleneck.
        ahead = self._ahead(wf, now) if status == S.SCHEDULED else 0
        body = workflow_json(self.blobs, wf, now, ahead=ahead, hide_mature=hide_mature)
        return json_response(200 if done or wait <= 0 else 202, body)

    def _ahead(self, wf: SimWorkflow, now: float) -> int:
        return sum(
            1
            for other in self.workflows.values()
            if other.t_processing < wf.t_processing and other.status(now) == S.SCHEDULED
        )

    # -- StepContext -------------------------------------------------------------------------
    def load_image(self, source: str) -> Source | None:
        return sources.load(self, source)

    def image_size(self, source: str) -> tuple[int, int] | None:
        return sources.size(self, source)

    # -- blobs -------------------------------------------------------------------------------
    def locate(self, blob_id: str) -> tuple[BlobRecord, str] | None:
        """A blob and its state now: ok, pending, blocked or restricted (see SimWorkflow)."""
        record = self.blobs.get(blob_id)
        if record is None:
            return None
        if record.owner is None:  # an upload
            return record, "ok"
        wf, step, index = self.owner(record)
        return record, wf.blob_state(step, index, time.monotonic())

    def owner(self, record: BlobRecord) -> tuple[SimWorkflow, SimStep, int]:
        assert record.owner is not None
        wf_id, step_index, index = record.owner
        wf = self.workflows[wf_id]
        return wf, wf.steps[step_index], index
