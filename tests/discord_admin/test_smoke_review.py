from __future__ import annotations

import asyncio

from tests.discord.harness import answer, text_of, world


async def test_blocked_job_refund_through_discord(tmp_path):
    async with world(tmp_path) as w:
        mods = w.fake.add_channel(w.guild, "mod-queue")
        await w.services.db.write(w.services.guilds.update_in, w.guild, mod_channel_id=mods)
        await w.grant(1000)
        w.sim.script("block_charged")
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "something dubious", "quality": "medium"},
        )
        await h.response()
        job = await w.only_job()
        await w.wait_job(job.id, "blocked")
        assert await w.available() == 1000 - 78
        await w.fake.wait_for(lambda: w.fake.channel_messages(mods), timeout=10)
        [item_message] = w.fake.channel_messages(mods)
        buttons = [c for row in item_message["components"] for c in row["components"]]
        refund = next(b for b in buttons if b["label"] == "Refund")
        # A plain member is refused and nothing changes.
        denied = await w.fake.click(
            int(item_message["id"]), refund["custom_id"], w.other, guild_id=w.guild, channel_id=mods
        )
        assert "moderator" in text_of(await answer(denied)).lower() and denied.ephemeral
        assert await w.available() == 1000 - 78
        second_mod = w.fake.add_member(w.guild, "mod2", permissions=1 << 13)
        first, second = await asyncio.gather(
            w.fake.click(
                int(item_message["id"]),
                refund["custom_id"],
                w.moderator,
                guild_id=w.guild,
                channel_id=mods,
            ),
            w.fake.click(
                int(item_message["id"]),
                refund["custom_id"],
                second_mod,
                guild_id=w.guild,
                channel_id=mods,
            ),
        )
        answers = sorted([text_of(await answer(first)), text_of(await answer(second))])
        assert answers[0].startswith("Already handled by <@"), answers
        assert answers[1].startswith("Review #1: refunded 78 Buzz"), answers
        assert await w.available() == 1000
        refunds = await w.services.db.fetchall("SELECT * FROM ledger_entries WHERE kind = 'refund'")
        assert len(refunds) == 1
        edited = w.fake.message(int(item_message["id"]))
        labels = [c["label"] for row in edited["components"] for c in row["components"]]
        assert "Refund" not in labels and "Dismiss" not in labels
        assert "refunded" in edited["embeds"][0]["fields"][-1]["name"]
        status = w.fake.message(job.status_message_id)
        assert "refunded the 78 Buzz" in status["embeds"][0]["fields"][-1]["value"]
        buzz = next(f["value"] for f in status["embeds"][0]["fields"] if f["name"] == "Buzz")
        assert buzz.startswith("0 Buzz charged (78 of 78 refunded)") and "balance: 1,000" in buzz
