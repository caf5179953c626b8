"""Blob ratings (nsfwLevel) and mature content: allowMatureContent, upgradeMode,
hideMatureContent, UpdateWorkflow's release and GetBlob's nsfwLevel ceiling."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bot.civitai.client import OrchestratorClient
from bot.civitai.models import Workflow, WorkflowStatus
from bot.civitai.simulator import Outcome, Simulator
from tests.civitai.sim_helpers import (
    BLOBS,
    WORKFLOWS,
    debits_credits,
    gen,
    post_steps,
    run,
    upscaler,
)

S = WorkflowStatus


async def rated(
    client: OrchestratorClient, external_id: str, prompt: str = "a fox [sim:r]", **extra: Any
) -> Workflow:
    workflow = await run(client, [gen(prompt)], external_id, **extra)
    assert workflow.status == S.SUCCEEDED
    return workflow


async def test_blobs_are_rated_pg_unless_scripted(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    plain = await rated(client, "r-pg", prompt="a fox")
    simulator.script(Outcome(nsfw_level="x"), external_id="r-scripted")
    scripted = await rated(client, "r-scripted", prompt="a fox")
    marked = await rated(client, "r-marked", prompt="a fox [sim:pg13]")
    assert [b.nsfw_level for b in plain.images()] == ["pg"] and plain.nsfw_level == "pg"
    assert scripted.images()[0].nsfw_level == "x" and scripted.nsfw_level == "x"
    assert marked.images()[0].nsfw_level == "pg13"
    assert marked.images()[0].available  # pg13 is not mature


async def test_the_content_route_reports_the_rating(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    workflow = await rated(client, "r-header")
    response = await http.get(workflow.images()[0].url)
    assert response.status_code == 200 and response.headers["x-nsfw-level"] == "r"


@pytest.mark.parametrize("level", ["r", "x", "xxx"])
async def test_mature_output_is_withheld_when_the_workflow_disallows_it(
    http: httpx.AsyncClient, client: OrchestratorClient, level: str
) -> None:
    workflow = await rated(
        client, f"r-no-{level}", prompt=f"a fox [sim:{level}]", allowMatureContent=False
    )
    (blob,) = workflow.images()
    assert not blob.available and blob.url is None
    assert blob.blocked_reason == "mature" and blob.nsfw_level == level
    assert workflow.blocked()  # the bot sends it to review, not to the channel
    assert workflow.allow_mature_content is False
    assert workflow.charged() == 300  # the work was done
    response = await http.get(f"{BLOBS}/{blob.id}")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("extra", "available"),
    [
        ({"allowMatureContent": True}, True),
        ({}, True),  # unset and paid in yellow (currencies [] lets it pick yellow)
        ({"currencies": ["blue"]}, False),  # unset, paid in blue, upgradeMode manual
        ({"currencies": ["blue"], "upgradeMode": "automatic"}, True),
    ],
)
async def test_unset_allow_mature_follows_the_currency_and_upgrade_mode(
    client: OrchestratorClient, extra: dict[str, Any], available: bool
) -> None:
    workflow = await rated(client, f"r-cur-{len(extra)}-{available}", **extra)
    assert workflow.images()[0].available is available
    assert workflow.charged() == 300


async def test_an_automatic_upgrade_swaps_blue_for_yellow(client: OrchestratorClient) -> None:
    workflow = await rated(client, "r-auto", currencies=["blue"], upgradeMode="automatic")
    items = workflow.transactions.items if workflow.transactions else []
    assert [(t.type, t.amount, t.account_type) for t in items] == [
        ("debit", 300, "blue"),
        ("credit", 300, "blue"),
        ("debit", 300, "yellow"),
    ]
    assert workflow.charged() == 300


async def test_update_with_allow_mature_content_releases_the_output(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    withheld = await rated(client, "r-release", currencies=["green"], allowMatureContent=False)
    assert withheld.id is not None and not withheld.images()[0].available
    response = await http.put(f"{WORKFLOWS}/{withheld.id}", json={"allowMatureContent": True})
    assert response.status_code == 204
    released = await client.get(withheld.id)
    (blob,) = released.images()
    assert blob.available and blob.url and blob.blocked_reason is None
    assert not released.blocked()
    assert (await client.download_blob(blob.url)).startswith(b"\x89PNG")
    assert debits_credits(released) == (600, 300)  # green refunded, yellow charged
    assert released.charged() == 300


async def test_hide_mature_content_drops_urls_without_blocking(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    workflow = await rated(client, "r-hide", prompt="a fox [sim:xxx]", allowMatureContent=True)
    hidden = Workflow.model_validate(
        (await http.get(f"{WORKFLOWS}/{workflow.id}", params={"hideMatureContent": "true"})).json()
    )
    (blob,) = hidden.images()
    assert not blob.available and blob.url is None and blob.blocked_reason is None
    assert workflow.images()[0].available  # without the flag it is there
    clean = await rated(client, "r-hide-pg", prompt="a fox", allowMatureContent=True)
    shown = await http.get(f"{WORKFLOWS}/{clean.id}", params={"hideMatureContent": "true"})
    assert Workflow.model_validate(shown.json()).images()[0].available


async def test_get_blob_refuses_a_blob_above_the_asked_ceiling(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    blob = (await rated(client, "r-ceiling")).images()[0]
    assert (await http.get(f"{BLOBS}/{blob.id}", params={"nsfwLevel": "pg13"})).status_code == 403
    allowed = await http.get(f"{BLOBS}/{blob.id}", params={"nsfwLevel": "r"})
    assert allowed.status_code == 308


async def test_an_upscale_inherits_its_source_rating(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    source = (await rated(client, "r-src", prompt="a fox [sim:x]")).images()[0]
    assert source.url is not None
    allowed = await run(client, [upscaler(source.url)], "r-up-yes")
    refused = await run(client, [upscaler(source.url)], "r-up-no", allowMatureContent=False)
    assert allowed.images()[0].nsfw_level == "x" and allowed.images()[0].available
    assert refused.images()[0].nsfw_level == "x" and refused.blocked()


async def test_a_withheld_blob_cannot_be_used_as_a_source(
    http: httpx.AsyncClient, client: OrchestratorClient, simulator: Simulator
) -> None:
    withheld = (await rated(client, "r-src-no", allowMatureContent=False)).images()[0]
    allowed = (await rated(client, "r-src-yes", allowMatureContent=True)).images()[0]
    for blob, status in ((withheld, 400), (allowed, 200)):
        source = f"{simulator.base_url}{BLOBS}/{blob.id}"  # GetBlob's URL, not a signed one
        response = await post_steps(http, [upscaler(source)], f"r-src-{blob.id}")
        assert response.status_code == status


def test_an_unknown_rating_is_refused() -> None:
    with pytest.raises(ValueError, match="nsfw level"):
        Outcome(nsfw_level="nc17")
