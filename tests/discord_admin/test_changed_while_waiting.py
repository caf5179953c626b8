"""What changed while a member's request waited for a moderator (an admin's settings, the
member's other jobs): the approval checks it again, as a new request would be checked, and
tells the moderator why it cannot run yet."""

from __future__ import annotations

from bot.civitai.simulator import Outcome
from tests.discord.harness import world
from tests.discord_admin.helpers import (
    COST,
    ask,
    held,
    item_message,
    ledger_kinds,
    mod_channel,
    press,
    request,
    started_job,
)


async def test_an_approval_after_the_admin_switched_the_model_off_is_refused(tmp_path):
    """The member's model is switched off (/settings model) while the request waits: an
    Approve would run it and charge the member for a model the server no longer offers."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        job = await held(w, "a castle at dawn")
        item = await item_message(w, job)
        await ask(w, w.admin, "settings default-model", {"model": "gpt-image-1.5"})
        await ask(w, w.admin, "settings model", {"model": "gpt-image-2", "enabled": False})

        text = await press(w, item, "Approve", w.moderator)
        assert text == (
            "The model gpt-image-2 has been switched off here since; reject the job instead."
        )
        assert (await w.services.jobs.job(job.id)).status.value == "held"
        assert w.sim.submissions == []
        assert await w.available() == 1000 - COST  # still only held
        # Reject settles it: nothing charged.
        await press(w, item, "Reject", w.moderator)
        await w.wait_job(job.id, "rejected")
        assert await w.available() == 1000
        assert await ledger_kinds(w) == [("grant", 1000), ("hold", COST), ("release", COST)]


async def test_an_approval_over_the_members_job_limit_tells_the_moderator_why(tmp_path):
    """The member started another job while this one waited and is at the server's limit:
    the moderator is told that the member is busy, not "you already have 1 job(s) running,
    nothing was charged" as if the moderator had asked for an image."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await ask(w, w.admin, "settings concurrency", {"per-member": 1, "per-guild": 5})
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        job = await held(w, "a castle at dawn")
        item = await item_message(w, job)
        w.sim.script(Outcome(runtime=300), prompt="a fox")
        running = await started_job(w, await request(w, "a fox"))

        text = await press(w, item, "Approve", w.moderator)
        assert text == (
            f"<@{w.member}> already has 1 job(s) running, the limit here is 1; "
            "approve this again once one has ended."
        )
        assert (await w.services.jobs.job(job.id)).status.value == "held"
        await w.wait_job(running.id, "done")
        text = await press(w, item, "Approve", w.moderator)
        assert text.endswith("approved: the job runs now.")
        await w.wait_job(job.id, "done")
