"""POST/GET/PUT /v2/consumer/workflows: submit (with whatif and externalId), read, update."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.civitai.simulator.responses import (
    flag,
    json_response,
    problem,
    validation_problem,
    wait_seconds,
)
from bot.civitai.simulator.steps import StepRefused
from bot.civitai.simulator.views import whatif_json, workflow_json
from bot.civitai.simulator.workflow import TERMINAL

if TYPE_CHECKING:
    from bot.civitai.simulator.server import Simulator

log = logging.getLogger(__name__)

WORKFLOWS = "/v2/consumer/workflows"


class WorkflowRoutes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def register(self, app: web.Application) -> None:
        app.router.add_post(WORKFLOWS, self.submit)
        app.router.add_get(WORKFLOWS, self.query)
        app.router.add_get(WORKFLOWS + "/{id}", self.get)
        app.router.add_put(WORKFLOWS + "/{id}", self.update)

    async def submit(self, request: web.Request) -> web.Response:
        sim = self.sim
        if (early := sim.gate(request, "submit")) is not None:
            return early
        try:
            template = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return problem(400, "the body is not JSON")
        errors = sim.document.validate_template(template)
        if errors:
            return validation_problem(errors)
        hide = flag(request, "hideMatureContent")
        external_id = template.get("externalId")
        existing = sim.claimed(external_id)
        if isinstance(existing, dict):  # an earlier whatif claimed this id
            return json_response(200, existing)
        if existing is not None:
            return await sim.answer(existing, wait_seconds(request), hide_mature=hide)
        try:
            plans = sim.plan(template)
        except StepRefused as exc:
            return validation_problem(exc.errors)
        if flag(request, "whatif"):
            # A whatif with an externalId claims it too, as the real API documents.
            estimate = whatif_json(template, sum(p.price for p in plans))
            sim.claim(external_id, estimate)
            return json_response(200, estimate)
        wf = sim.create(template, plans)
        sim.claim(external_id, wf)
        return await sim.answer(wf, wait_seconds(request), hide_mature=hide)

    async def query(self, request: web.Request) -> web.Response:
        """QueryWorkflows: the newest `take` workflows, with `tags` those carrying them all (no
        cursor: one page)."""
        sim = self.sim
        if (early := sim.gate(request, "query")) is not None:
            return early
        take = int(request.query.get("take") or 20)
        now = time.monotonic()
        tags = set(request.query.getall("tags", []))  # workflows carrying all of them
        found = [w for w in sim.workflows.values() if tags <= set(w.template.get("tags") or [])]
        newest = found[-take:][::-1] if take > 0 else []
        items = [workflow_json(sim.blobs, wf, now, ahead=0) for wf in newest]
        return json_response(200, {"next": "", "items": items})

    async def get(self, request: web.Request) -> web.Response:
        sim = self.sim
        if (early := sim.gate(request, "get")) is not None:
            return early
        wf = sim.workflows.get(request.match_info["id"])
        if wf is None:
            return problem(404, "workflow not found")
        hide = flag(request, "hideMatureContent")
        return await sim.answer(wf, wait_seconds(request), hide_mature=hide)

    async def update(self, request: web.Request) -> web.Response:
        """UpdateWorkflowRequest: cancel (status: canceled), or allowMatureContent — true lifts
        the mature-content restriction (paid in yellow Buzz from then on)."""
        sim = self.sim
        if (early := sim.gate(request, "cancel")) is not None:
            return early
        wf = sim.workflows.get(request.match_info["id"])
        if wf is None:
            return problem(404, "workflow not found")
        try:
            body: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return problem(400, "the body is not JSON")
        if not isinstance(body, dict) or not ({"status", "allowMatureContent"} & set(body)):
            return validation_problem([("status", "status must be canceled")])
        if "status" in body and body["status"] != "canceled":
            return validation_problem([("status", "status must be canceled")])
        now = time.monotonic()
        if isinstance(body.get("allowMatureContent"), bool):
            wf.allow_mature = body["allowMatureContent"]
            wf.notify()
        status = wf.status(now)
        if body.get("status") == "canceled" and status not in TERMINAL:
            wf.canceled_phase = status
            wf.canceled_at = now
            wf.notify()
        return web.Response(status=204)
