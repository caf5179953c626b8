"""A delivery's turn (bot/engine/turns.py) covers only the work that holds images in memory:
Discord being slow to take a job's final status edit, its moderators' notice or a rate-limited
post never keeps other jobs' results from being posted."""

from __future__ import annotations

import asyncio

import pytest

from bot.civitai.simulator import Outcome
from tests.discord.harness import started, world
from tests.discord.test_discord_faults import create, traced
from tests.fakes import rest as fake_rest


@pytest.fixture
def hold_final_status(monkeypatch):
    """Edits that show a job as Done wait until the returned event is set (Discord slow to
    answer them: a rate-limited webhook, a stalled request)."""
    gate = asyncio.Event()
    held: list[str] = []
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        body = await request.read()
        if b"Done" in body and not gate.is_set():
            held.append(request.match_info["message_id"])
            await gate.wait()
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    return gate, held


async def test_stalled_final_status_edits_do_not_hold_up_other_results(
    tmp_path, caplog, hold_final_status
):
    """Two jobs' Done edits hang (as many as there are delivery turns): a third job's result
    is still posted, and the two finish showing Done once Discord answers."""
    gate, held = hold_final_status
    async with world(tmp_path) as w:
        await w.grant(1000)
        try:
            first = [await started(w, await create(w, f"a stalled status {n}")) for n in range(2)]
            await w.fake.wait_for(lambda: len(held) == 2, what="both Done edits held")
            w.sim.script(Outcome("succeed"), prompt="a third job")
            third = await started(w, await create(w, "a third job"))
            await w.wait_result(third.id)
        finally:
            gate.set()
        for job in [*first, third]:
            await w.wait_status(await w.wait_job(job.id, "done"), "Done")
            assert len(w.results_of(job.id)) == 1
    assert traced(caplog) == []
