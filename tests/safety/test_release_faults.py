"""A moderator's release of a result kept from its channel, when it does not go as planned:
the release channel refuses the post, or recording it meets a locked database. What the
moderators' card shows and what the member is told, against the real bot and fake Discord."""

from __future__ import annotations

import asyncio

from bot.store import db as dbmod
from tests.discord.harness import MANAGE_MESSAGES, answer, buttons, text_of, world
from tests.discord.test_job_faults import delete_by_moderator
from tests.discord_admin.helpers import (
    ask,
    click,
    item_message,
    mod_channel,
    press,
    request,
    started_job,
)
from tests.fakes.state import SEND_MESSAGES
from tests.safety.helpers import nsfw_channel
from tests.safety.test_mature import item_edits, kept, release_cut_off
from tests.store.read_only import write_locked


async def test_a_release_the_channel_refuses_shows_the_item_open_again_on_its_card(tmp_path):
    """A second moderator's click while the release is on its way redraws the card as
    released (no buttons); the release channel then refuses the post and the item opens
    again: the card must show it open with its buttons, or nobody can decide it any more."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        second = w.fake.add_member(w.guild, "mod2", permissions=MANAGE_MESSAGES)
        await w.fake.settle()
        job, item = await kept(w)
        gate = w.fake.hold_requests("POST", rf"/channels/{gallery}/messages$")
        releasing = await click(w, item, "Release", w.moderator)
        await w.fake.wait_for(
            lambda: any(
                c.method == "POST" and c.path.endswith(f"/channels/{gallery}/messages")
                for c in w.fake.calls
            ),
            what="the release on its way",
        )
        text = await press(w, item, "Dismiss", second)
        assert text.startswith("Already handled by")
        card = w.fake.message(int(item["id"]))
        assert "Release" not in buttons(card)  # redrawn as released

        w.fake.set_bot_channel_permissions(gallery, deny=SEND_MESSAGES)
        gate.set()
        told = text_of(await answer(releasing))
        assert "the item is open again" in told

        def reopened() -> bool:
            shown = w.fake.message(int(item["id"]))
            return "Release failed by" in text_of(shown) and "Release" in buttons(shown)

        await w.fake.wait_for(reopened, what="the card showing the item open again")
        assert w.fake.channel_messages(gallery) == []
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.open


async def test_a_release_recorded_at_the_next_start_tells_the_member_once(tmp_path, monkeypatch):
    """The release is posted, then recording it meets an operator's sqlite3 shell holding
    the write lock, and the bot stops before it could be recorded: the next start records
    it, and the member (whose status message is gone, so told privately) hears it once."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)  # 10 s in production
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        handle = await request(w, "a fox at night [sim:r]")
        job = await w.wait_job((await started_job(w, handle)).id, "blocked")
        item = await item_message(w, job)
        assert job.status_message_id is not None
        delete_by_moderator(w, job.status_message_id)
        gate = w.fake.hold_requests("POST", rf"/channels/{gallery}/messages$", answer_only=True)
        pressed = asyncio.create_task(press(w, item, "Release", w.moderator))
        await w.fake.wait_for(lambda: w.fake.channel_messages(gallery), what="the release")
        with write_locked(tmp_path / "bot.sqlite3"):
            gate.set()
            text = await asyncio.wait_for(pressed, 30)
            assert text == f"Review #1: released in <#{gallery}>."
            await w._stop()  # stopped while the lock is still held: nothing recorded
        before = item_edits(w, item)
        await w.restart_bot()  # records the release, and shows it on the item again
        await w.fake.wait_for(lambda: item_edits(w, item) > before, what="the item refreshed")

        where = w.fake.dm_messages(w.member) + handle.followups
        notices = [m for m in where if "posted the result in" in text_of(m)]
        assert len(notices) == 1
        assert len(w.fake.channel_messages(gallery)) == 1


async def test_a_dm_release_to_a_member_who_takes_no_dms_says_so(tmp_path):
    """The member does not accept DMs from the bot (Discord's 50007): the moderator reads
    why the result could not be sent, not a bare status code, and the item stays open."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        job, item = await kept(w)
        w.fake.set_accepts_dms(w.member, False)
        text = await press(w, item, "Send by DM", w.moderator)
        assert text == (
            "The result could not be released: the member does not accept direct messages "
            "from me (or left the server); the item is open again."
        )
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.open


async def test_a_release_channel_the_bot_may_not_post_in_says_so(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        gallery = nsfw_channel(w, "gallery")
        await ask(w, w.admin, "settings mature", {"release-channel": gallery})
        _, item = await kept(w)
        w.fake.set_bot_channel_permissions(gallery, deny=SEND_MESSAGES)
        await w.fake.settle()
        text = await press(w, item, "Release", w.moderator)
        assert text == (
            f"The result could not be released: I am not allowed to post it in <#{gallery}> "
            "(I need Send Messages and Attach Files there); the item is open again."
        )


async def test_a_release_the_next_start_cannot_make_shows_on_the_card(tmp_path):
    """The process died while posting a release, and by the next start the release channel
    lost its age restriction: the item opens again and its card says the release failed."""
    async with world(tmp_path) as w:
        gallery, job, item, _ = await release_cut_off(w)
        w.fake.set_channel_nsfw(gallery, False)
        await w.restart_bot()

        def shown() -> bool:
            card = w.fake.message(int(item["id"]))
            return "Release failed by" in text_of(card) and "Send by DM" in buttons(card)

        await w.fake.wait_for(shown, what="the card showing the failed release")
        assert w.fake.channel_messages(gallery) == []
        stored = await w.services.moderation.item_for_job(job.id)
        assert stored is not None and stored.open
