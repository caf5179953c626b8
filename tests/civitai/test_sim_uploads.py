"""Blob uploads (direct and presigned), using an upload as a step's input, RefreshBlob, and the
"upload" fault route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bot.civitai.client import OrchestratorClient
from bot.civitai.models import ImageBlob, WorkflowStatus
from bot.civitai.simulator import Simulator, blob_routes
from tests.civitai.sim_helpers import BLOBS, cutout, data_url, decode, png_bytes, run, upscaler

S = WorkflowStatus


async def upload(http: httpx.AsyncClient, data: bytes, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", {"Content-Type": "image/png"})
    return await http.post(BLOBS, content=data, **kwargs)


async def test_an_upload_is_stored_and_served(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    data = png_bytes(320, 240, "navy")
    response = await upload(http, data)
    assert response.status_code == 201
    blob = ImageBlob.model_validate(response.json())
    assert blob.available and blob.url and blob.url_expires_at is not None
    assert (blob.width, blob.height) == (320, 240) and blob.nsfw_level == "pg"
    assert simulator.uploads == [blob.id]
    assert (await http.get(blob.url)).content == data
    redirect = await http.get(f"{BLOBS}/{blob.id}")
    assert redirect.status_code == 308
    assert (await http.get(redirect.headers["Location"])).content == data


async def test_a_multipart_upload_is_taken_too(http: httpx.AsyncClient) -> None:
    data = png_bytes(50, 40)
    response = await http.post(BLOBS, files={"file": ("cat.png", data, "image/png")})
    assert response.status_code == 201
    assert response.json()["width"] == 50
    assert (await http.get(response.json()["url"])).content == data


async def test_an_upload_can_be_an_input_by_either_url(
    http: httpx.AsyncClient, client: OrchestratorClient, simulator: Simulator
) -> None:
    blob = (await upload(http, png_bytes(100, 80, "purple"))).json()
    by_get_blob = f"{simulator.base_url}{BLOBS}/{blob['id']}"
    upscaled = await run(client, [upscaler(blob["url"])], "upl-up")
    cut = await run(client, [cutout(by_get_blob)], "upl-cut")
    assert [(b.width, b.height) for b in upscaled.images()] == [(200, 160)]
    assert [(b.width, b.height) for b in cut.images()] == [(100, 80)]
    image = decode(await client.download_blob(cut.images()[0].url))
    assert image.getpixel((50, 40)) == (128, 0, 128, 255)


async def test_an_edit_without_a_size_is_priced_from_the_uploaded_image(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    blob = (await upload(http, png_bytes(1536, 1024))).json()
    edit = {
        "$type": "imageGen",
        "input": {
            "engine": "openai",
            "model": "gpt-image-2",
            "operation": "editImage",
            "prompt": "make it snow",
            "images": [blob["url"]],
        },
    }
    workflow = await run(client, [edit], "upl-edit")
    assert workflow.status == S.SUCCEEDED
    assert [(b.width, b.height) for b in workflow.images()] == [(1536, 1024)]
    assert workflow.charged() == 221  # the 1024×1536 tier, high quality


async def test_the_upload_rating_carries_into_what_is_made_from_it(
    http: httpx.AsyncClient, client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.upload_nsfw_level = "r"
    blob = (await upload(http, png_bytes(64, 64))).json()
    assert blob["nsfwLevel"] == "r"
    workflow = await run(client, [upscaler(blob["url"])], "upl-r", allowMatureContent=False)
    assert workflow.images()[0].nsfw_level == "r" and workflow.blocked()


# -- RefreshBlob -------------------------------------------------------------------------------


async def test_refresh_gives_a_working_url_after_the_old_one_expired(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.blob_ttl = -60  # every URL signed from now on is already expired
    stale = (await upload(http, png_bytes(30, 30))).json()
    assert (await http.get(stale["url"])).status_code == 403
    simulator.blob_ttl = 3600
    response = await http.post(f"{BLOBS}/{stale['id']}/refresh")
    assert response.status_code == 200
    fresh = ImageBlob.model_validate(response.json())
    assert fresh.id == stale["id"] and fresh.url != stale["url"]
    assert (await http.get(fresh.url)).status_code == 200


async def test_refresh_of_a_workflow_output(
    http: httpx.AsyncClient, client: OrchestratorClient
) -> None:
    workflow = await run(client, [upscaler(data_url(20, 20))], "refresh-out")
    (blob,) = workflow.images()
    response = await http.post(f"{BLOBS}/{blob.id}/refresh")
    refreshed = ImageBlob.model_validate(response.json())
    assert refreshed.url != blob.url and (refreshed.width, refreshed.height) == (40, 40)
    assert await client.download_blob(refreshed.url) == await client.download_blob(blob.url)


async def test_refresh_of_no_such_blob_and_without_a_token(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    assert (await http.post(f"{BLOBS}/nope.png/refresh")).status_code == 404
    async with httpx.AsyncClient(base_url=simulator.base_url) as anonymous:
        assert (await anonymous.post(f"{BLOBS}/nope.png/refresh")).status_code == 401
        assert (await anonymous.post(BLOBS, content=png_bytes(5, 5))).status_code == 401
    assert simulator.uploads == []


# -- presigned uploads -------------------------------------------------------------------------


async def test_a_presigned_url_takes_an_upload_without_a_token(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    presigned = (await http.get(f"{BLOBS}/upload")).json()
    assert presigned["uploadUrl"].startswith(f"{simulator.base_url}{BLOBS}?")
    async with httpx.AsyncClient() as anonymous:
        accepted = await anonymous.post(
            presigned["uploadUrl"], content=png_bytes(8, 8), headers={"Content-Type": "image/png"}
        )
        url = presigned["uploadUrl"]
        # One hex digit of the signature changed (always a change: "abc" could be what it was).
        forged = await anonymous.post(
            url[:-1] + ("0" if url[-1] != "0" else "1"),
            content=png_bytes(8, 8),
            headers={"Content-Type": "image/png"},
        )
    assert accepted.status_code == 201 and forged.status_code == 401
    assert len(simulator.uploads) == 1


# -- refusals and faults -----------------------------------------------------------------------


async def test_uploads_that_are_refused(
    http: httpx.AsyncClient, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await upload(http, b"")).status_code == 400
    text = {"Content-Type": "text/plain"}
    assert (await upload(http, b"hello", headers=text)).status_code == 415
    assert (await upload(http, b"not an image at all")).status_code == 415
    monkeypatch.setattr(blob_routes, "MAX_UPLOAD_BYTES", 1000)
    too_big = await upload(http, png_bytes(400, 400, "red") + b"\0" * 2000)
    assert too_big.status_code == 413 and too_big.json()["status"] == 413
    assert simulator.uploads == []


async def test_upload_faults_hit_uploads_only(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.fault(503, times=2, retry_after=1, route="upload")
    attempts = [await upload(http, png_bytes(10, 10)) for _ in range(3)]
    assert [r.status_code for r in attempts] == [503, 503, 201]
    assert attempts[0].headers["Retry-After"] == "1"
    assert simulator.requests["upload"] == 3
    assert len(simulator.uploads) == 1


async def test_a_lost_upload_answer_still_stored_the_blob(
    http: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.lose_answer(route="upload")
    with pytest.raises(httpx.TransportError):
        await upload(http, png_bytes(12, 12))
    assert len(simulator.uploads) == 1  # acted on; only the answer was lost
