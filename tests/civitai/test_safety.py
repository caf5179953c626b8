"""The orchestrator's side of safety: what a workflow says about mature content (withheld
for its rating vs. blocked by a filter), allowMatureContent per job, and the SafetyUpstream
over real HTTP — xGuard pre-moderation, upload ratings, the release of withheld outputs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.civitai.client import OrchestratorClient
from bot.civitai.downloads import refused_blobs
from bot.civitai.endings import ending_of
from bot.civitai.models import Workflow
from bot.civitai.safety import CivitaiSafety, mature_fields, rating_of, withheld
from bot.civitai.simulator import Outcome, Simulator
from bot.engine.safety import PremoderationFailed
from bot.store.jobs import JobRecord, JobStatus
from tests.civitai.sim_helpers import gen, run
from tests.discord.harness import png


def stored_job(**changes: Any) -> JobRecord:
    now = datetime.now(UTC)
    values: dict[str, Any] = {name: None for name in JobRecord.__dataclass_fields__}
    values.update(
        id="j1",
        guild_id=1,
        channel_id=2,
        member_id=3,
        model="gpt-image-2",
        operation="createImage",
        options={},
        step={},
        estimate=10,
        status=JobStatus.BLOCKED,
        result_images=[],
        delivered_message_ids=[],
        simulated=False,
        created_at=now,
        updated_at=now,
        missing_images=0,
    )
    values.update(changes)
    return JobRecord(**values)


def workflow(*blobs: dict[str, Any], job: dict[str, Any] | None = None) -> Workflow:
    return Workflow.model_validate(
        {
            "id": "wf",
            "status": "succeeded",
            "steps": [
                {
                    "$type": "imageGen",
                    "status": "succeeded",
                    "jobs": [job or {"id": "1", "status": "succeeded"}],
                    "output": {"images": [{"id": f"b{i}", **b} for i, b in enumerate(blobs)]},
                }
            ],
        }
    )


def test_mature_output_withheld_is_not_a_filter_block() -> None:
    kept = workflow({"nsfwLevel": "pg"}, {"nsfwLevel": "x", "blockedReason": "mature"})
    assert withheld(kept) and rating_of(kept) == "x"
    ending = ending_of(kept)
    assert (ending.status, ending.withheld, ending.rating) == (JobStatus.BLOCKED, True, "x")
    filtered = workflow({"nsfwLevel": "x", "blockedReason": "nsfw"})
    assert not withheld(filtered) and not ending_of(filtered).withheld
    job_blocked = workflow(
        {"blockedReason": "mature"}, job={"id": "1", "status": "failed", "reason": "blocked"}
    )
    assert not withheld(job_blocked)
    fine = workflow({"nsfwLevel": "pg13"}, {"nsfwLevel": "na"})
    assert not withheld(fine) and rating_of(fine) == "pg13"
    assert ending_of(fine).status is JobStatus.DELIVERING


def test_allow_mature_content_follows_the_jobs_level() -> None:
    job = stored_job()
    assert mature_fields(job) == {}  # a job from before channel levels: as before
    assert mature_fields(replace(job, max_rating="pg13")) == {"allowMatureContent": False}
    assert mature_fields(replace(job, max_rating="r")) == {"allowMatureContent": True}


async def test_premoderation_verdicts_over_http(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    safety = CivitaiSafety(client)
    clean = await safety.premoderate("c-1", "a harbour at dawn", ())
    assert not clean.flagged and clean.cost == 1 and clean.labels == ()
    assert set(clean.scores) >= {"sexual", "hate", "violence"}
    flagged = await safety.premoderate("c-2", "a cat [sim:flag:hate]", ("hate", "violence"))
    assert flagged.flagged and flagged.labels == ("hate",) and flagged.scores["hate"] == 0.97
    assert set(flagged.scores) == {"hate", "violence"}
    assert "hate policy" in flagged.reasons["hate"]
    simulator.script(Outcome("fail", step="xGuardModeration"))
    with pytest.raises(PremoderationFailed, match="ended failed") as failed:
        await safety.premoderate("c-3", "a lighthouse", ())
    assert failed.value.cost == 0  # a failed check is refunded


async def test_a_check_that_never_ends_fails_and_is_stopped(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    simulator.script(Outcome("never", step="xGuardModeration"))
    safety = CivitaiSafety(client, wait=0, timeout=0.3)
    with pytest.raises(PremoderationFailed, match="no verdict within"):
        await safety.premoderate("slow-1", "a lighthouse", ())
    [record] = simulator.workflows.values()
    assert record.canceled_at is not None


async def test_upload_ratings_and_releases(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    safety = CivitaiSafety(client)
    assert await safety.rate_source(png(), "image/png") == "pg"
    simulator.upload_nsfw_level = "xxx"
    assert await safety.rate_source(png(), "image/png") == "xxx"

    made = await run(client, [gen("a fox [sim:r]")], "rel-1", allowMatureContent=False)
    assert withheld(made) and made.id is not None
    await safety.unlock(replace(stored_job(), workflow_id=made.id))
    released = await client.get(made.id)
    assert not withheld(released) and released.images()[0].available
    await safety.unlock(stored_job())  # nothing upstream: nothing to do


async def test_a_check_that_times_out_records_what_the_orchestrator_charged(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    """A check stopped while it runs keeps its debit upstream (a cancel refunds only before
    processing): the guild's pre-moderation spend must count it, not 0."""
    simulator.script(Outcome("never", step="xGuardModeration", charge=3))
    safety = CivitaiSafety(client, wait=0, timeout=0.3)
    with pytest.raises(PremoderationFailed, match="no verdict within") as failed:
        await safety.premoderate("slow-2", "a lighthouse", ())
    [record] = simulator.workflows.values()
    assert record.canceled_at is not None
    charged = record.net_charge(record.canceled_at + 1)
    assert charged == 3 and failed.value.cost == charged


async def test_a_check_whose_reads_fail_records_what_the_orchestrator_charged(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    """The check was made, then every read of it failed (503s past the client's retries): it
    runs on upstream and is charged, so it is stopped and its charge read back for the
    guild's pre-moderation spend, not counted as 0."""
    simulator.script(Outcome("never", step="xGuardModeration", charge=3))
    check = asyncio.create_task(CivitaiSafety(client, wait=1).premoderate("f-1", "a cat", ()))
    async with asyncio.timeout(10):
        while (
            not simulator.workflows
            or next(iter(simulator.workflows.values())).status(time.monotonic()) != "processing"
        ):
            await asyncio.sleep(0.01)
    simulator.fault(503, route="get", times=1 + client.max_retries)
    with pytest.raises(PremoderationFailed, match="503") as failed:
        await check
    [record] = simulator.workflows.values()
    assert record.canceled_at is not None
    charged = record.net_charge(record.canceled_at + 1)
    assert charged == 3 and failed.value.cost == charged


async def test_a_verdict_that_blocks_without_a_triggered_label_is_flagged(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    """The output's `blocked` is the orchestrator's decision; it may say so with no label
    triggered (a policy of its own). Such a prompt is flagged, not let through as clean."""
    simulator.script(Outcome(moderation_blocked=True))
    verdict = await CivitaiSafety(client).premoderate("b-1", "a harbour at dawn", ())
    assert verdict.flagged and verdict.labels == ()


async def test_the_operator_is_told_the_right_fix_for_results_they_cannot_download() -> None:
    """A host missing from civitai.blob_hosts is fixed by listing it; plain http is not fixed
    by any setting (the bot sends its token only over https), so that is what the alert says."""
    client = OrchestratorClient(
        "https://orchestration.civitai.com", "t", blob_hosts=["*.civitai.com"]
    )
    try:
        other = refused_blobs(client, workflow({"url": "https://cdn.example.net/b0"}))
        assert other is not None and "add the host to civitai.blob_hosts" in other
        plain = refused_blobs(client, workflow({"url": "http://blobs.civitai.com/b0"}))
        assert plain is not None and plain.endswith("plain http, which the bot never downloads")
        assert refused_blobs(client, workflow({"url": "https://blobs.civitai.com/b0"})) is None
    finally:
        await client.aclose()


async def test_a_check_whose_submit_answer_was_lost_records_what_the_orchestrator_charged(
    simulator: Simulator,
) -> None:
    """The submit made the check but its answer was lost, and the retry was refused (503): the
    check runs on upstream and is charged, so it is found by its externalId, stopped, and its
    charge read back for the guild's pre-moderation spend, not counted as 0."""
    simulator.script(Outcome("never", step="xGuardModeration", charge=3))

    async def until_it_runs(delay: float) -> None:  # the backoff, while the check starts
        async with asyncio.timeout(10):
            while not simulator.workflows or (
                next(iter(simulator.workflows.values())).status(time.monotonic()) != "processing"
            ):
                await asyncio.sleep(0.01)

    client = OrchestratorClient(
        simulator.base_url, simulator.token, max_retries=1, sleep=until_it_runs
    )
    simulator.lose_answer(route="submit")
    simulator.fault(503, route="submit")
    try:
        with pytest.raises(PremoderationFailed, match="503") as failed:
            await CivitaiSafety(client, wait=0).premoderate("lost-1", "a cat", ())
    finally:
        await client.aclose()
    [record] = simulator.workflows.values()
    assert record.canceled_at is not None, "the check was left running upstream"
    charged = record.net_charge(record.canceled_at + 1)
    assert charged == 3 and failed.value.cost == charged


async def test_a_failed_check_whose_refund_is_booked_late_costs_the_guild_nothing(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    """The orchestrator refunds a failed check, but may book the credit a few seconds after
    the check ended: read at once, the check was counted in the guild's pre-moderation spend
    (and budget) at its debit, though it cost nothing. It is read again, as jobs are."""
    simulator.script(Outcome("fail", step="xGuardModeration", refund_delay=0.3))
    safety = CivitaiSafety(client, refund_wait=0.2)
    with pytest.raises(PremoderationFailed, match="ended failed") as failed:
        await safety.premoderate("late-1", "a lighthouse", ())
    [record] = simulator.workflows.values()
    assert record.net_charge(time.monotonic()) == 0
    assert failed.value.cost == 0


async def test_a_check_whose_submit_was_refused_after_a_lost_answer_is_looked_up_not_made(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    """Every submit attempt of a check ended without a readable answer (500s: any may have
    been acted on). The check is looked up by its tag, never submitted again: a second
    submit of a check the orchestrator never made would make it, and charge the guild for a
    check nobody asked for. Not found now, its charge is 'not known yet' (looked for again
    later), and a later look that still does not find it counts nothing."""
    simulator.fault(500, route="submit", times=1 + client.max_retries)
    safety = CivitaiSafety(client, wait=0)
    with pytest.raises(PremoderationFailed, match="500") as failed:
        await safety.premoderate("gone-1", "a cat", ())
    assert failed.value.cost is None
    assert simulator.workflows == {}, "a check was made by the recovery itself"
    assert await safety.charge_of("gone-1") == 0
    assert simulator.workflows == {}


async def test_a_check_whose_charge_cannot_be_read_is_read_again_later(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    """The check was made and charged, then every read of it failed, the one after its
    cancel too: its charge is not known (None), not 0 — and read again later, it is what the
    orchestrator charged."""
    simulator.script(Outcome("never", step="xGuardModeration", charge=3))
    check = asyncio.create_task(CivitaiSafety(client, wait=1).premoderate("u-1", "a cat", ()))
    async with asyncio.timeout(10):
        while (
            not simulator.workflows
            or next(iter(simulator.workflows.values())).status(time.monotonic()) != "processing"
        ):
            await asyncio.sleep(0.01)
    simulator.fault(503, route="get", times=2 * (1 + client.max_retries))
    with pytest.raises(PremoderationFailed, match="503") as failed:
        await check
    assert failed.value.cost is None
    [record] = simulator.workflows.values()
    assert record.canceled_at is not None
    assert await CivitaiSafety(client).charge_of("u-1") == 3


async def test_a_check_that_could_not_be_stopped_is_not_counted_while_it_still_runs(
    client: OrchestratorClient, simulator: Simulator
) -> None:
    """A check cut off by a stop still runs upstream, and the orchestrator refuses to cancel
    it: what it has been charged so far is not its charge (it may charge or refund later), so
    it stays unknown (None) and is read again; once it has ended, its real charge is told."""
    simulator.script(Outcome("never", step="xGuardModeration", charge=3))
    check = asyncio.create_task(CivitaiSafety(client, wait=1).premoderate("u-2", "a cat", ()))
    async with asyncio.timeout(10):
        while (
            not simulator.workflows
            or next(iter(simulator.workflows.values())).status(time.monotonic()) != "processing"
        ):
            await asyncio.sleep(0.01)
    check.cancel()  # the bot stopped
    with pytest.raises(asyncio.CancelledError):
        await check
    simulator.fault(503, route="cancel", times=1 + client.max_retries)
    assert await CivitaiSafety(client).charge_of("u-2") is None
    [record] = simulator.workflows.values()
    assert record.canceled_at is None  # still running upstream
    assert await CivitaiSafety(client).charge_of("u-2") == 3
