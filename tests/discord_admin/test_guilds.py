"""One bot, two servers, the same member in both: Buzz, filters, bans and review items stay in
the server they belong to."""

from __future__ import annotations

import csv
import io

from tests.discord.harness import MANAGE_GUILD, MANAGE_MESSAGES, answer, text_of, world
from tests.discord_admin.helpers import (
    COST,
    ask,
    held,
    item_message,
    join,
    mod_channel,
    press,
    request,
    started_job,
)
from tests.fakes.interactions import MESSAGE_COMPONENT
from tests.fakes.validation import BUTTON


async def click_from(w, guild: int, channel: int, user: int, message_id: int, custom_id: str):
    """A tampered press: a message of `guild` claiming to carry another server's button.
    Discord itself only sends presses of buttons really on the message; this checks the bot's
    own guard behind that (the item's and the job's server must be the one pressed in)."""
    stored = w.fake.world.messages[message_id]
    message = stored.payload(user)
    button = {"type": BUTTON, "style": 1, "label": "x", "custom_id": custom_id}
    message["components"] = [{"type": 1, "components": [button]}]
    record = w.fake.interactions.new(
        itype=MESSAGE_COMPONENT,
        guild_id=guild,
        channel_id=channel,
        user_id=user,
        data={"custom_id": custom_id, "component_type": BUTTON},
        message=message,
        source_message_id=stored.id,
    )
    return await w.fake._dispatch(record)


async def test_quota_filters_bans_and_items_stay_in_their_server(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        # A second server with the same member (alice) in it, its own moderator and admin.
        g2 = w.fake.add_guild("Second")
        art2 = w.fake.add_channel(g2, "art")
        mods2 = w.fake.add_channel(g2, "mods")
        join(w, g2, w.member)
        mod2 = w.fake.add_member(g2, "mod-two", permissions=MANAGE_MESSAGES)
        admin2 = w.fake.add_member(g2, "admin-two", permissions=MANAGE_GUILD)
        await w.fake.settle()
        await w.bot.tree.sync()  # the commands everywhere, as a deployment with global sync
        await w.services.db.write(w.services.guilds.update_in, g2, mod_channel_id=mods2)

        # Buzz granted in the first server cannot be spent in the second.
        await w.grant(1000)
        handle = await request(w, "a bridge", guild=g2, channel=art2)
        refused = text_of(await answer(handle))
        assert f"this needs {COST} Buzz; you have 0" in refused
        assert await w.jobs() == []
        shown = await ask(w, admin2, "quota show", {"member": w.member}, guild=g2, channel=art2)
        assert "Balance: **0**" in shown

        # A filter and a ban in the first server do not reach the second.
        await ask(w, w.moderator, "mod filter-add", {"pattern": "bridge"})
        held_job = await held(w, "a bridge at dusk")
        await ask(w, w.moderator, "mod ban", {"member": w.member, "reason": "here only"})
        text = await ask(
            w, admin2, "quota grant", {"member": w.member, "amount": 200}, guild=g2, channel=art2
        )
        assert text.endswith("their balance is now 200.")
        there = await started_job(w, await request(w, "a bridge at dawn", guild=g2, channel=art2))
        there = await w.wait_job(there.id, "done")
        assert there.guild_id == g2 and there.charged == COST
        assert await ask(w, mod2, "mod filter-list", guild=g2, channel=art2) == "No filters."
        assert "banned" in text_of(await answer(await request(w, "anything")))
        assert await w.available() == 1000 - COST  # the held job's Buzz, in the first server

        # The second server's ledger export has only its own entries.
        handle = await w.fake.slash(g2, art2, admin2, "quota export")
        message = await answer(handle)
        rows = list(
            csv.DictReader(io.StringIO(w.fake.attachment_bytes(message["attachments"][0]).decode()))
        )
        assert [r["kind"] for r in rows] == ["grant", "hold", "capture"]
        assert {r["job_id"] for r in rows} <= {"", there.id}

        # A review item of the first server: invisible from the second, and not decidable there.
        item = await item_message(w, held_job)
        assert await ask(w, mod2, "mod queue", guild=g2, channel=art2) == (
            "Nothing waits for review."
        )
        result = w.fake.message(there.delivered_message_ids[0])  # its result, in the second server
        for user, custom_id, refusal in (
            (mod2, "rev:approve:1", "There is no such review item here."),
            (mod2, "rev:strike:1", "There is no such review item here."),
            (w.member, f"appeal:{held_job.id}", "I cannot find that job here any more."),
        ):
            handle = await click_from(w, g2, art2, user, int(result["id"]), custom_id)
            assert text_of(await answer(handle)) == refusal, custom_id
        # The second server's moderator, a plain member in the first, is refused there.
        join(w, w.guild, mod2)
        await w.fake.settle()
        text = await press(w, item, "Approve", mod2)
        assert text.startswith("Only moderators")
        assert (await w.services.jobs.job(held_job.id)).status.value == "held"
        assert await w.services.moderation.strikes(w.guild, w.member) == []
        item_row = await w.services.moderation.item(1)
        assert item_row is not None and item_row.open and item_row.appeal_note is None
