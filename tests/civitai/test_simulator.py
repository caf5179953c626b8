"""The simulator speaks the orchestrator's API: lifecycle, images, outcomes, money, errors."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.catalog import RequestOptions, build_request
from bot.catalog.names import Model, Operation
from bot.catalog.request import ImageRequest
from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import Unavailable
from bot.civitai.models import Workflow, WorkflowStatus
from bot.civitai.schema import OpenApiDocument
from bot.civitai.simulator import OUTCOMES, Outcome, Simulator

S = WorkflowStatus
WORKFLOWS = "/v2/consumer/workflows"


def request_for(
    model: Model = Model.GPT_IMAGE_2, operation: Operation = Operation.CREATE, **options: Any
) -> ImageRequest:
    options.setdefault("prompt", "a harbour at night")
    return build_request(model, operation, RequestOptions(**options))


async def run(client: OrchestratorClient, request: ImageRequest, external_id: str) -> Workflow:
    """Submit and follow to the end (wait=300 is 3 s at the fixture's speed)."""
    workflow = await client.submit(client.template([request.step()], external_id), wait=300)
    while not workflow.terminal:
        workflow = await client.get(workflow.id, wait=300)
    return workflow


def debits_credits(workflow: Workflow) -> tuple[int, int]:
    items = workflow.transactions.items if workflow.transactions else []
    return (
        sum(t.amount for t in items if t.type == "debit"),
        sum(t.amount for t in items if t.type == "credit"),
    )


# -- lifecycle -------------------------------------------------------------------------------


async def test_lifecycle_unassigned_scheduled_processing_succeeded(
    openapi: OpenApiDocument,
) -> None:
    # Slow enough that every phase outlasts a poll on a loaded machine: unassigned 100 ms,
    # scheduled 250–1000 ms, processing 1 s (at 0.2 the 40 ms unassigned phase was sometimes
    # missed under a parallel test run).
    async with Simulator(speed=0.5, seed=11, document=openapi) as sim:
        sim.script(Outcome("succeed", runtime=2))
        async with OrchestratorClient(sim.base_url, sim.token) as client:
            workflow = await client.submit(
                client.template([request_for().step()], "job-life"), wait=0
            )
            seen = [workflow.status]
            positions = {workflow.status: workflow.queue_position()}
            progress = []
            while not workflow.terminal:
                await asyncio.sleep(0.01)
                workflow = await client.get(workflow.id)
                if workflow.status != seen[-1]:
                    seen.append(workflow.status)
                    positions[workflow.status] = workflow.queue_position()
                if workflow.status == S.PROCESSING and workflow.progress() is not None:
                    progress.append(workflow.progress())
    assert seen == [S.UNASSIGNED, S.SCHEDULED, S.PROCESSING, S.SUCCEEDED]
    assert positions[S.SCHEDULED] == 0  # queuePosition present while scheduled
    assert positions[S.UNASSIGNED] is None and positions[S.SUCCEEDED] is None
    assert progress and all(0 <= p <= 1 for p in progress)
    assert progress == sorted(progress)
    job = workflow.jobs()[0]
    assert job.started_at is not None and job.completed_at is not None
    assert workflow.started_at <= workflow.completed_at


async def test_queue_position_counts_the_jobs_ahead(openapi: OpenApiDocument) -> None:
    async with (
        Simulator(speed=1.0, seed=2, document=openapi) as sim,
        httpx.AsyncClient(
            base_url=sim.base_url, headers={"Authorization": f"Bearer {sim.token}"}
        ) as http,
    ):
        step = request_for().step()
        ids = []
        for i in range(3):
            r = await http.post(
                WORKFLOWS, json={"steps": [step], "externalId": f"q{i}", "currencies": []}
            )
            ids.append(r.json()["id"])
        await asyncio.sleep(0.25)  # past unassigned (0.2 s), well before processing
        order = sorted(ids, key=lambda i: sim.workflows[i].t_processing)
        positions = []
        for wf_id in order:
            body = (await http.get(f"{WORKFLOWS}/{wf_id}")).json()
            assert body["status"] == "scheduled"
            positions.append(body["steps"][0]["jobs"][0]["queuePosition"]["precedingJobs"])
    assert positions == [0, 1, 2]


# -- placeholder images ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "options", "size", "pil_format"),
    [
        (Model.GPT_IMAGE_2, {"size": "1536x1024", "format": "png"}, (1536, 1024), "PNG"),
        (Model.GPT_IMAGE_2, {"size": "768x1024", "format": "jpeg"}, (768, 1024), "JPEG"),
        (Model.GPT_IMAGE_2, {"size": "1024x1024", "format": "webp"}, (1024, 1024), "WEBP"),
        (Model.GPT_IMAGE_2, {"size": "1024x1024"}, (1024, 1024), "JPEG"),  # upstream default
        (
            Model.GPT_IMAGE_1_5,
            {"size": "1024x1536", "background": "transparent"},
            (1024, 1536),
            "PNG",
        ),
        (Model.DALL_E_3, {"size": "1792x1024", "format": "webp"}, (1792, 1024), "WEBP"),
        (Model.DALL_E_2, {"size": "256x256", "format": "png"}, (256, 256), "PNG"),
    ],
)
async def test_placeholder_images_decode_at_the_requested_size_and_format(
    client: OrchestratorClient,
    model: Model,
    options: dict[str, Any],
    size: tuple[int, int],
    pil_format: str,
) -> None:
    workflow = await run(
        client, request_for(model, **options), f"job-img-{model.name}-{size[0]}x{size[1]}"
    )
    assert workflow.status == S.SUCCEEDED
    (blob,) = workflow.images()
    assert (blob.width, blob.height) == size
    data = await client.download_blob(blob.url)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == pil_format
        assert image.size == size
        image.load()


async def test_one_image_per_quantity(client: OrchestratorClient) -> None:
    workflow = await run(client, request_for(Model.DALL_E_2, size="256x256", quantity=3), "q3")
    blobs = workflow.images()
    assert len(blobs) == 3 and len({b.id for b in blobs}) == 3
    images = [await client.download_blob(b.url) for b in blobs]
    assert all(Image.open(io.BytesIO(d)).size == (256, 256) for d in images)


async def test_gpt2_edit_without_size_follows_the_source_image(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (768, 512), "white").save(buffer, format="PNG")
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    request = build_request(
        Model.GPT_IMAGE_2,
        Operation.EDIT,
        RequestOptions(prompt="make it snow", images=(source,)),
        input_size=(768, 512),
    )
    workflow = await run(client, request, "job-edit-auto")
    (blob,) = workflow.images()
    assert (blob.width, blob.height) == (768, 512)
    assert workflow.charged() == request.buzz == 195


# -- outcomes and money ------------------------------------------------------------------------


async def test_succeed_charges_the_price(client: OrchestratorClient) -> None:
    request = request_for(size="2560x1440", quality="high", quantity=2)
    workflow = await run(client, request, "job-ok")
    assert workflow.status == S.SUCCEEDED
    assert workflow.charged() == request.buzz == 598
    assert workflow.cost is not None and workflow.cost.total == 598
    assert debits_credits(workflow) == (598, 0)
    assert not workflow.blocked()


async def test_block_is_refunded_and_says_blocked(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script("block")
    workflow = await run(client, request_for(), "job-block")
    assert workflow.status == S.FAILED
    assert workflow.jobs()[0].reason == "blocked"
    assert workflow.blocked()
    assert workflow.charged() == 0
    assert debits_credits(workflow) == (286, 286)
    assert workflow.images() == []


async def test_block_charged(client: OrchestratorClient, simulator: Simulator) -> None:
    simulator.script("block_charged", external_id="job-bcharged")
    request = request_for(quality="medium")
    workflow = await run(client, request, "job-bcharged")
    assert workflow.status == S.FAILED
    assert workflow.jobs()[0].reason == "blocked" and workflow.blocked()
    assert workflow.charged() == request.buzz == 78
    assert debits_credits(workflow) == (78, 0)


@pytest.mark.parametrize(("kind", "status"), [("fail", S.FAILED), ("expire", S.EXPIRED)])
async def test_fail_and_expire_are_refunded(
    client: OrchestratorClient, simulator: Simulator, kind: str, status: S
) -> None:
    simulator.script(kind, prompt="unlucky")
    workflow = await run(client, request_for(prompt="an unlucky cat"), f"job-{kind}")
    assert workflow.status == status
    assert not workflow.blocked()
    assert workflow.charged() == 0
    assert debits_credits(workflow) == (286, 286)


async def test_blob_blocked(client: OrchestratorClient, simulator: Simulator) -> None:
    simulator.script("blob_blocked")
    request = request_for()
    workflow = await run(client, request, "job-blob-blocked")
    assert workflow.status == S.SUCCEEDED
    (blob,) = workflow.images()
    assert blob.blocked_reason and not blob.available and blob.url is None
    assert workflow.blocked()
    assert workflow.charged() == request.buzz
    async with httpx.AsyncClient(
        base_url=simulator.base_url, headers={"Authorization": f"Bearer {simulator.token}"}
    ) as http:
        r = await http.get(f"/v2/consumer/blobs/{blob.id}")
    assert r.status_code == 404


async def test_output_errors(client: OrchestratorClient, simulator: Simulator) -> None:
    simulator.script("output_errors")
    workflow = await run(client, request_for(), "job-oe")
    assert workflow.status == S.FAILED
    assert workflow.output_errors() and "blocked" in workflow.output_errors()[0]
    assert workflow.blocked()
    assert workflow.charged() == 0


async def test_never_stays_processing_until_canceled(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script("never")
    request = request_for()
    workflow = await client.submit(client.template([request.step()], "job-never"), wait=100)
    assert workflow.status == S.PROCESSING  # the whole wait (1 s at this speed) went by
    again = await client.get(workflow.id, wait=50)
    assert again.status == S.PROCESSING
    assert again.charged() == request.buzz  # debited, not yet settled
    await client.cancel(workflow.id)
    final = await client.get(workflow.id)
    assert final.status == S.CANCELED
    assert final.charged() == request.buzz  # canceled while processing: charged


async def test_cancel_before_processing_refunds(openapi: OpenApiDocument) -> None:
    # At real speed a workflow waits at least 0.7 s before processing: time enough to cancel.
    async with Simulator(speed=1.0, seed=4, document=openapi) as sim:
        async with OrchestratorClient(sim.base_url, sim.token) as client:
            body = client.template([request_for().step()], "job-c1")
            workflow = await client.submit(body, wait=0)
            assert workflow.status == S.UNASSIGNED
            await client.cancel(workflow.id)
            final = await client.get(workflow.id, wait=60)
        assert sim.workflows[workflow.id].canceled_phase in (S.UNASSIGNED, S.SCHEDULED)
        assert sim.charged_total() == 0
    assert final.status == S.CANCELED
    assert final.charged() == 0
    assert debits_credits(final) == (286, 286)


async def test_cancel_during_processing_charges(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script(Outcome("succeed", runtime=1000))
    request = request_for(quality="low")
    workflow = await client.submit(client.template([request.step()], "job-c2"), wait=0)
    while workflow.status != S.PROCESSING:
        workflow = await client.get(workflow.id, wait=1)
    await client.cancel(workflow.id)
    final = await client.get(workflow.id)
    assert final.status == S.CANCELED
    assert final.charged() == request.buzz == 13
    assert simulator.charged_total() == 13


async def test_cancel_after_the_end_changes_nothing(client: OrchestratorClient) -> None:
    workflow = await run(client, request_for(), "job-c3")
    await client.cancel(workflow.id)
    assert (await client.get(workflow.id)).status == S.SUCCEEDED


async def test_charged_total_sums_what_was_kept(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script("block")
    simulator.script("succeed")
    simulator.script("block_charged")
    for i in range(3):
        await run(client, request_for(), f"job-sum-{i}")
    assert simulator.charged_total() == 2 * 286


async def test_outcome_charge_override(client: OrchestratorClient, simulator: Simulator) -> None:
    simulator.script(Outcome("succeed", charge=999))
    workflow = await run(client, request_for(), "job-over")
    assert workflow.charged() == 999


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        Outcome("explode")
    assert set(OUTCOMES) >= {"succeed", "fail", "block", "block_charged", "expire", "never"}


# -- whatif and external ids --------------------------------------------------------------------


async def test_a_whatif_claims_its_external_id(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    # Documented API behaviour the engine must avoid: a whatif with a job's externalId makes the
    # real submit with that id return the estimate, and no workflow is ever created. The client
    # does not take that id-less answer for a workflow.
    request = request_for(quality="low")
    body = client.template([request.step()], "job-claimed")
    estimate = await client.submit(body, whatif=True)
    assert estimate.id is None and estimate.cost.total == 13
    with pytest.raises(Unavailable, match="not a workflow"):
        await client.submit(body, wait=60)
    assert simulator.submissions == [] and simulator.workflows == {}
    assert simulator.workflow_for("job-claimed") is None


async def test_external_id_is_stored_with_the_user_prefix(client: OrchestratorClient) -> None:
    workflow = await client.submit(client.template([request_for().step()], "job-x"), wait=0)
    assert workflow.external_id == "sim-job-x"


# -- HTTP errors ---------------------------------------------------------------------------------


@pytest.fixture
async def http(simulator: Simulator) -> Any:
    async with httpx.AsyncClient(
        base_url=simulator.base_url, headers={"Authorization": f"Bearer {simulator.token}"}
    ) as client:
        yield client


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "sim-test-token"}]
)
async def test_401_without_or_with_a_bad_token(simulator: Simulator, headers: dict) -> None:
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        body = {"steps": [request_for().step()], "externalId": "x"}
        for response in (
            await http.post(WORKFLOWS, json=body, headers=headers),
            await http.get(f"{WORKFLOWS}/wf_1", headers=headers),
            await http.put(f"{WORKFLOWS}/wf_1", json={"status": "canceled"}, headers=headers),
        ):
            assert response.status_code == 401
            assert response.json()["status"] == 401
    assert simulator.submissions == []


async def test_400_validation_problem_details_for_a_schema_violation(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    step = request_for(Model.GPT_IMAGE_1).step()
    step["input"]["style"] = "vivid"
    step["input"]["quantity"] = 11
    response = await http.post(WORKFLOWS, json={"steps": [step], "externalId": "bad"})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and body["title"]
    assert body["errors"]["steps[0].input.style"] == ["style is not a valid property"]
    assert body["errors"]["steps[0].input.quantity"] == ["quantity must be ≤ 10"]
    assert simulator.submissions == []


async def test_400_for_a_width_that_is_not_a_multiple_of_16(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    step = request_for().step()
    step["input"]["width"] = 1000
    response = await http.post(
        WORKFLOWS, json={"steps": [step], "externalId": "w", "currencies": []}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"steps[0].input.width": ["width must be a multiple of 16"]}


async def test_400_for_a_gpt2_edit_size_outside_256_3840(http: httpx.AsyncClient) -> None:
    # The schema leaves edit sizes unbounded; the simulator holds them to the guide's 256–3840.
    step = request_for(
        Model.GPT_IMAGE_2,
        Operation.EDIT,
        images=("https://image.civitai.com/a.png",),
        size="1024x1024",
    ).step()
    step["input"]["width"] = 4096
    response = await http.post(
        WORKFLOWS, json={"steps": [step], "externalId": "e", "currencies": []}
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["steps[0].input.width"]


async def test_400_for_a_body_that_is_not_a_template(http: httpx.AsyncClient) -> None:
    r = await http.post(
        WORKFLOWS, content=b"not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = await http.post(WORKFLOWS, json={"steps": []})
    assert r.status_code == 400
    r = await http.post(
        WORKFLOWS,
        json={"steps": [{"$type": "imageGen", "input": {"engine": "openai", "model": "gpt-5"}}]},
    )
    assert r.status_code == 400
    assert "steps[0].input.model" in r.json()["errors"]


async def test_long_poll_answers_202_while_running_and_200_at_the_end(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.script(Outcome("succeed", runtime=30))  # 0.3 s at this speed
    first = await http.post(
        WORKFLOWS,
        json={"steps": [request_for().step()], "externalId": "lp", "currencies": []},
        params={"wait": 1},
    )
    assert first.status_code == 202
    wf_id = first.json()["id"]
    assert (await http.get(f"{WORKFLOWS}/{wf_id}", params={"wait": 0})).status_code == 200
    done = await http.get(f"{WORKFLOWS}/{wf_id}", params={"wait": 300})
    assert done.status_code == 200 and done.json()["status"] == "succeeded"


async def test_faults_hit_the_chosen_route_only(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.fault(503, times=2, retry_after=3, route="get")
    posted = await http.post(
        WORKFLOWS, json={"steps": [request_for().step()], "externalId": "f", "currencies": []}
    )
    assert posted.status_code == 200
    wf_id = posted.json()["id"]
    statuses = [(await http.get(f"{WORKFLOWS}/{wf_id}")) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "3"
    assert simulator.requests["get"] == 3


async def test_404_for_unknown_workflow(http: httpx.AsyncClient) -> None:
    assert (await http.get(f"{WORKFLOWS}/wf_nope")).status_code == 404
    assert (await http.put(f"{WORKFLOWS}/wf_nope", json={"status": "canceled"})).status_code == 404
