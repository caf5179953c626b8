"""A loopback orchestrator: the same HTTP API, placeholder images, scripted outcomes.

Used by the tests and by the bot itself when no CIVITAI_TOKEN is set. It speaks
POST/GET/PUT /v2/consumer/workflows with `wait` (long-poll), `whatif` and `hideMatureContent`,
Bearer auth, the schema's validation (400 ValidationProblemDetails), `externalId` idempotency
(a whatif with an externalId claims it too, as the real API documents), the blob routes (GetBlob,
signed expiring content URLs, uploads, RefreshBlob) and these step types: imageGen,
imageUpscaler, imageBackgroundRemoval, promptEnhancement and xGuardModeration.

A workflow's life is computed from the clock, not driven by tasks: unassigned → scheduled →
processing → its outcome, with runtimes drawn from the guide's tables times `speed`. `wait` is
scaled by `speed` too, so a time-scaled run keeps the real API's proportions.

Scripting: `script(Outcome(kind, runtime=, charge=, nsfw_level=, flag_labels=, label_errors=,
step=), external_id= | prompt=)` (without `step`, an outcome applies to image workflows only),
`fault(status, route=submit|get|cancel|blob|upload|refresh, ...)`, `lose_answer()` and
`upload_nsfw_level`. By hand, prompt markers: [sim:block] (any outcome kind) ends an image
workflow that way, [sim:r] (any NSFWLevel) rates its blobs, [sim:flag] / [sim:flag:hate] makes
an xGuardModeration step trigger that label.

Modules: server (the Simulator), workflow_routes and blob_routes (HTTP), workflow (life and
money), views (the JSON), blobs (ids, signed URLs, the image cache), sources (input images),
scripting (outcomes, faults, prompt markers), responses, and steps/ (one planner per type).
"""

from bot.civitai.simulator.scripting import (
    MATURE_LEVELS,
    NSFW_LEVELS,
    OUTCOMES,
    REFUNDED,
    Fault,
    Outcome,
)
from bot.civitai.simulator.server import Simulator
from bot.civitai.simulator.steps.image_gen import RUNTIMES
from bot.civitai.simulator.views import USER_ID
from bot.civitai.simulator.workflow import TERMINAL, SimStep, SimWorkflow

__all__ = [
    "MATURE_LEVELS",
    "NSFW_LEVELS",
    "OUTCOMES",
    "REFUNDED",
    "RUNTIMES",
    "TERMINAL",
    "USER_ID",
    "Fault",
    "Outcome",
    "SimStep",
    "SimWorkflow",
    "Simulator",
]
