"""The JSON the orchestrator answers with: a Workflow, a whatif estimate, a Blob."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.civitai.simulator.blobs import BlobStore
from bot.civitai.simulator.responses import iso
from bot.civitai.simulator.scripting import MATURE_LEVELS, rank
from bot.civitai.simulator.workflow import TERMINAL, SimStep, SimWorkflow, WorkflowStatus

log = logging.getLogger(__name__)

S = WorkflowStatus
USER_ID = "sim"
# Why a blob is unavailable: the outcome's block, and mature output the workflow may not return.
BLOCKED_REASON = "nsfw"
MATURE_REASON = "mature"
_TIPS = {"civitai": 0, "creators": 0}


def stored_external(external_id: str | None) -> str | None:
    # The API stores the key as "{userId}-{clientValue}"; clients must not expect it back verbatim.
    return f"{USER_ID}-{external_id}" if external_id else None


def whatif_json(template: dict[str, Any], price: int) -> dict[str, Any]:
    return {
        "id": None,
        "createdAt": iso(datetime.now(UTC)),
        "status": S.UNASSIGNED.value,
        "steps": [],
        "cost": {"base": price, "total": price, "tips": dict(_TIPS)},
        "transactions": {"list": [], "insufficientBuzz": False},
        "externalId": stored_external(template.get("externalId")),
        "metadata": {},
        "tags": [],
        "arguments": {},
        "callbacks": [],
        "tips": dict(_TIPS),
        "currencies": template.get("currencies", []),
        "upgradeMode": template.get("upgradeMode") or "manual",
        "forceRefunded": False,
    }


def blob_json(
    store: BlobStore,
    wf: SimWorkflow,
    step: SimStep,
    index: int,
    now: float,
    *,
    hide_mature: bool = False,
) -> dict[str, Any]:
    plan = step.plan.blobs[index]
    blob_id = step.blob_ids[index]
    rating = wf.blob_rating(step, index)
    url, expires = store.listed_url(blob_id)
    blob: dict[str, Any] = {
        "type": "image",
        "id": blob_id,
        "available": True,
        "url": url,
        "urlExpiresAt": iso(expires),
        "jobId": f"{wf.id}-job{step.index}",
        "nsfwLevel": rating,
        "width": plan.width,
        "height": plan.height,
    }
    if wf.outcome.unsized:
        blob.update(width=None, height=None)
    state = wf.blob_state(step, index, now)
    if state == "blocked":
        blob.update(available=False, url=None, urlExpiresAt=None, blockedReason=BLOCKED_REASON)
    elif state == "restricted":
        blob.update(available=False, url=None, urlExpiresAt=None, blockedReason=MATURE_REASON)
    elif hide_mature and rating in MATURE_LEVELS:
        # hideMatureContent: "any blob that has mature won't be available and won't have a URL".
        blob.update(available=False, url=None, urlExpiresAt=None)
    return blob


def upload_json(store: BlobStore, blob_id: str) -> dict[str, Any]:
    record = store.get(blob_id)
    assert record is not None
    url, expires = store.content_url(blob_id)
    return {
        "type": "image",
        "id": blob_id,
        "available": True,
        "url": url,
        "urlExpiresAt": iso(expires),
        "nsfwLevel": record.nsfw_level,
        "width": record.width,
        "height": record.height,
    }


def workflow_json(
    store: BlobStore, wf: SimWorkflow, now: float, *, ahead: int, hide_mature: bool = False
) -> dict[str, Any]:
    """`ahead`: how many scheduled workflows start before this one (its queue position)."""
    status = wf.status(now)

    def at(t: float) -> str:
        return iso(wf.created + timedelta(seconds=t - wf.t0))

    started = at(wf.t_processing) if now >= wf.t_processing else None
    completed = at(wf.finished_at()) if status in TERMINAL else None
    steps = []
    for step in wf.steps:
        job: dict[str, Any] = {
            "id": f"{wf.id}-job{step.index}",
            "status": status.value,
            "cost": float(step.plan.price),
            "startedAt": started,
            "completedAt": completed,
        }
        if status == S.SCHEDULED:
            job["queuePosition"] = {
                "support": "unsupported" if wf.unsupported else "available",
                "precedingJobs": ahead,
                "startAt": at(wf.t_processing),
                "completeAt": at(wf.t_done),
            }
        if status == S.FAILED and wf.outcome.kind in ("block", "block_charged"):
            job["reason"] = "blocked"
        body: dict[str, Any] = {
            "$type": step.type,
            "name": step.name,
            "priority": step.template.get("priority") or "normal",
            "status": status.value,
            "metadata": step.template.get("metadata") or {},
            "input": step.template["input"],
            "jobs": [job],
            "startedAt": started,
            "completedAt": completed,
        }
        output = _output(store, wf, step, status, now, hide_mature)
        if output is not None:
            body["output"] = output
        if status == S.PROCESSING and wf.outcome.kind != "never":
            span = max(1e-9, wf.t_done - wf.t_processing)
            body["estimatedProgressRate"] = round(min(1.0, (now - wf.t_processing) / span), 3)
        steps.append(body)
    result: dict[str, Any] = {
        "id": wf.id,
        "createdAt": iso(wf.created),
        "status": status.value,
        "startedAt": started,
        "completedAt": completed,
        "steps": steps,
        "cost": {"base": wf.price, "total": wf.price, "tips": dict(_TIPS)},
        "transactions": {"list": _transactions(wf, now)},
        "externalId": stored_external(wf.external_id),
        "metadata": wf.template.get("metadata") or {},
        "tags": wf.template.get("tags") or [],
        "arguments": {},
        "callbacks": [],
        "tips": dict(_TIPS),
        "currencies": wf.template.get("currencies", []),
        "allowMatureContent": wf.allow_mature,
        "upgradeMode": wf.upgrade_mode,
        "forceRefunded": False,
    }
    ratings = [wf.blob_rating(step, i) for step in wf.steps for i in range(len(step.plan.blobs))]
    if status == S.SUCCEEDED and ratings:
        result["nsfwLevel"] = max(ratings, key=rank)
    return result


def _output(
    store: BlobStore,
    wf: SimWorkflow,
    step: SimStep,
    status: WorkflowStatus,
    now: float,
    hide_mature: bool,
) -> dict[str, Any] | None:
    if status == S.SUCCEEDED:
        blobs = [
            blob_json(store, wf, step, i, now, hide_mature=hide_mature)
            for i in range(len(step.plan.blobs))
        ]
        return step.plan.output(blobs, wf.outcome)
    if status == S.FAILED and wf.outcome.kind == "output_errors" and step.type == "imageGen":
        return {"images": [], "errors": ["blocked: the prompt was refused by moderation"]}
    return None


def _transactions(wf: SimWorkflow, now: float) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    items = []
    for kind, amount, account in wf.transactions(now):
        seen[kind] = seen.get(kind, 0) + 1
        suffix = kind[0] if seen[kind] == 1 else f"{kind[0]}{seen[kind]}"
        items.append(
            {"type": kind, "amount": amount, "id": f"{wf.id}-{suffix}", "accountType": account}
        )
    return items
