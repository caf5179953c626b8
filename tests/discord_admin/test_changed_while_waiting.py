"""Settings an admin changes while a member's request waits for a moderator: the approval
checks them again, as a new request would be checked, and the moderator is told why."""

from __future__ import annotations

from tests.discord.harness import world
from tests.discord_admin.helpers import (
    COST,
    ask,
    held,
    item_message,
    ledger_kinds,
    mod_channel,
    press,
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
