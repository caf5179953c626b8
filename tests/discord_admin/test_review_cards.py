"""The moderators' review cards as they are redrawn: what they show of a prompt, a strike on
the member's other cards, two decisions close together, a database busy at a click, and
edits Discord keeps failing."""

from __future__ import annotations

from bot.store import db as dbmod
from tests.discord.harness import world
from tests.discord.test_discord_faults import traced
from tests.discord_admin.helpers import held, item_message, mod_channel, press
from tests.store.read_only import write_locked


async def filtering(w) -> int:
    """A moderation channel (its id returned), Buzz for the member, and a filter holding any
    prompt with "lantern"."""
    mods = mod_channel(w)
    await w.set_guild(mod_channel_id=mods)
    await w.grant(1000)
    await w.bot.filters.add(w.guild, "lantern", w.moderator)
    return mods


async def test_a_multi_line_prompt_is_one_line_on_the_card(tmp_path):
    """A prompt written over several lines (and blank ones) reads as one line on the card,
    as the member wrote it otherwise; a very long one stays within Discord's limits."""
    async with world(tmp_path) as w:
        await filtering(w)
        job = await held(w, "a paper lantern\n\n  on a quiet\r\nriver")
        card = await item_message(w, job)
        description = card["embeds"][0]["description"]
        assert description == "a paper lantern on a quiet river"

        long = await held(w, "lantern\n" + "word " * 900)
        card = await item_message(w, long)
        description = card["embeds"][0]["description"]
        assert "\n" not in description and len(description) <= 1500
        assert description.startswith("lantern word word")


async def test_a_click_while_the_database_is_locked_asks_the_moderator_to_retry(
    tmp_path, caplog, monkeypatch
):
    """An operator's sqlite3 shell holds the write lock when a moderator presses Approve:
    they read privately that nothing was done and to try again (no traceback, no silence);
    the card still offers the decision, and pressing again once the lock is gone works."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path) as w:
        await filtering(w)
        job = await held(w, "a paper lantern")
        card = await item_message(w, job)
        with write_locked(tmp_path / "bot.sqlite3"):
            reply = await press(w, card, "Approve", w.moderator)
        assert "try again" in reply.lower() and "nothing was done" in reply, reply
        assert (await w.services.moderation.item_for_job(job.id)).open
        reply = await press(w, card, "Approve", w.moderator)
        assert "approved" in reply
        await w.wait_job(job.id, "done")
    assert traced(caplog) == []
