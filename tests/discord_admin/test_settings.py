"""/settings: every subcommand answers with the values now in force and refuses bad input;
where review items go when no moderation channel can take them; the log channel."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.civitai.simulator import Outcome
from tests.discord.harness import answer, is_ephemeral, text_of, world
from tests.discord.test_discord_faults import traced
from tests.discord_admin.helpers import (
    COST,
    ask,
    blocked,
    delete_channel,
    held,
    item_message,
    mod_channel,
    option,
    outage,
    press,
    request,
    started_job,
)
from tests.fakes import DriverError

SEND_MESSAGES = 1 << 11


async def test_every_settings_subcommand_answers_with_the_values_in_force(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        logs = w.fake.add_channel(w.guild, "image-log")
        other = w.fake.add_channel(w.guild, "other")
        helpers = w.fake.add_role(w.guild, "helpers")
        bosses = w.fake.add_role(w.guild, "bosses")

        text = await ask(w, w.admin, "settings show")
        assert "Moderation channel: not set" in text and "Log channel: not set" in text
        assert "Default model (/imagine): gpt-image-2" in text
        assert "Confirm requests above: 5,000 Buzz" in text
        assert "Jobs at once: 5 per member, 10 for the server" in text
        assert "Automatic ban: 3 strikes within 30 days" in text

        text = await ask(w, w.admin, "settings mod-channel", {"channel": mods})
        assert f"Moderation channel: <#{mods}>" in text and "cannot post" not in text
        text = await ask(w, w.admin, "settings log-channel", {"channel": logs})
        assert f"Log channel: <#{logs}>" in text
        text = await ask(w, w.admin, "settings default-model", {"model": "dall-e-3"})
        assert "Default model (/imagine): dall-e-3" in text
        text = await ask(w, w.admin, "settings model", {"model": "gpt-image-1", "enabled": False})
        assert "Models on: gpt-image-2, gpt-image-1.5, dall-e-3, dall-e-2" in text
        text = await ask(w, w.admin, "settings channel", {"channel": w.channel, "allowed": False})
        assert f"Image commands in: all channels; never <#{w.channel}>" in text
        text = await ask(w, w.admin, "settings channel", {"channel": other, "allowed": True})
        assert f"Image commands in: only <#{other}>; never <#{w.channel}>" in text
        text = await ask(w, w.admin, "settings confirm-above", {"buzz": 50})
        assert "Confirm requests above: 50 Buzz" in text
        text = await ask(w, w.admin, "settings concurrency", {"per-member": 3, "per-guild": 20})
        assert "Jobs at once: 3 per member, 20 for the server" in text
        text = await ask(w, w.admin, "settings mod-role", {"role": helpers})
        assert f"Moderator role: <@&{helpers}>" in text
        text = await ask(w, w.admin, "settings admin-role", {"role": bosses})
        assert f"admin role: <@&{bosses}>" in text
        text = await ask(w, w.admin, "settings reroll-anyone", {"allowed": True})
        assert "Re-roll by anyone: yes" in text
        text = await ask(w, w.admin, "settings strikes", {"count": 4, "days": 7})
        assert "Automatic ban: 4 strikes within 7 days" in text

        s = await w.services.guilds.settings(w.guild)
        assert (s.mod_channel_id, s.log_channel_id, s.default_model) == (mods, logs, "dall-e-3")
        assert s.disabled_models == {"gpt-image-1"}
        assert s.allowed_channels == {other} and s.denied_channels == {w.channel}
        assert (s.confirm_above, s.per_member_concurrency, s.per_guild_concurrency) == (50, 3, 20)
        assert (s.moderator_role_id, s.admin_role_id, s.reroll_anyone) == (helpers, bosses, True)
        assert (s.strikes_to_ban, s.strike_window_days) == (4, 7)
        assert text == await ask(w, w.admin, "settings show")  # show agrees with the last answer

        # The settings are in force: the channel is refused, another one asks to confirm.
        await w.grant(1000)
        refused = text_of(await answer(await request(w, "a lake")))
        assert "not allowed in this channel" in refused
        handle = await request(w, "a lake", channel=other)
        confirm = await answer(handle)
        assert is_ephemeral(confirm) and f"costs **{COST} Buzz**" in text_of(confirm)
        assert await w.jobs() == []


async def test_settings_bad_input_is_refused_with_the_allowed_range(tmp_path):
    async with world(tmp_path) as w:
        ranges = {
            ("concurrency", "per-member"): (1, 50),
            ("concurrency", "per-guild"): (1, 10_000),
            ("confirm-above", "buzz"): (0, 10_000_000),
            ("strikes", "count"): (0, 100),
            ("strikes", "days"): (1, 3650),
        }
        for (sub, name), (low, high) in ranges.items():
            o = option(w, "settings", sub, name)
            assert (o["min_value"], o["max_value"]) == (low, high), (sub, name)
        for options in (
            {"per-member": 0, "per-guild": 5},
            {"per-member": 51, "per-guild": 100},
            {"per-member": 1, "per-guild": 10_001},
        ):
            with pytest.raises(DriverError, match="outside registered range"):
                await w.fake.slash(w.guild, w.channel, w.admin, "settings concurrency", options)
        with pytest.raises(DriverError, match="outside registered range"):
            await w.fake.slash(w.guild, w.channel, w.admin, "settings confirm-above", {"buzz": -1})
        with pytest.raises(DriverError, match="registered choices"):
            await w.fake.slash(
                w.guild, w.channel, w.admin, "settings default-model", {"model": "midjourney"}
            )
        before = await w.services.guilds.settings(w.guild)

        text = await ask(w, w.admin, "settings concurrency", {"per-member": 5, "per-guild": 2})
        assert text == "**per-member**: cannot be more than per-guild."
        text = await ask(w, w.admin, "settings model", {"model": "gpt-image-2", "enabled": False})
        assert "gpt-image-2 is the default model" in text
        await ask(w, w.admin, "settings model", {"model": "dall-e-2", "enabled": False})
        text = await ask(w, w.admin, "settings default-model", {"model": "dall-e-2"})
        assert text == (
            "**model**: dall-e-2 is switched off here; turn it on with /settings model first."
        )
        after = await w.services.guilds.settings(w.guild)
        assert after.default_model == "gpt-image-2"
        assert (after.per_member_concurrency, after.per_guild_concurrency) == (
            before.per_member_concurrency,
            before.per_guild_concurrency,
        )


def owner_dms(w) -> list[dict[str, Any]]:
    owner = w.fake.world.guild(w.guild).owner_id
    return w.fake.dm_messages(owner)


async def test_without_a_moderation_channel_the_owner_is_told_once(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        one = await blocked(w, "number one")
        await w.fake.wait_for(lambda: owner_dms(w), what="the owner's DM")
        two = await blocked(w, "number two")
        await w.fake.settle()
        [dm] = owner_dms(w)
        assert "needs a moderator's review" in dm["content"]
        assert "no moderation channel is set" in dm["content"]
        assert "/settings mod-channel" in dm["content"] and "/mod queue" in dm["content"]
        # Nothing was posted anywhere but the members' own status messages.
        bot_id = str(w.fake.bot_user_id)
        for channel in w.fake.world.channels.values():
            if channel.guild_id == w.guild:
                for m in w.fake.channel_messages(channel.id):
                    assert m["author"]["id"] != bot_id or "Blocked upstream" not in text_of(m)

        queue = await ask(w, w.moderator, "mod queue")
        assert f"#1 blocked · <@{w.member}> · number one · not posted" in queue
        assert f"#2 blocked · <@{w.member}> · number two · not posted" in queue

        mods = mod_channel(w)
        handle = await w.fake.slash(
            w.guild, w.channel, w.admin, "settings mod-channel", {"channel": mods}
        )
        assert f"<#{mods}>" in text_of(await answer(handle))
        posted = await handle.wait_for_followup(2)  # after the settings (the 1st follow-up)
        assert text_of(posted) == "Posted 2 waiting review item(s) there."
        first = await item_message(w, one)
        await item_message(w, two)
        assert "[open](" in await ask(w, w.moderator, "mod queue")
        await press(w, first, "Refund", w.moderator)
        assert len(owner_dms(w)) == 1


async def test_jobs_found_blocked_after_an_outage_tell_the_owner_once(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        for prompt in ("together one", "together two", "together three"):
            w.sim.script(Outcome("block_charged", runtime=40), prompt=prompt)
        handles = [await request(w, p) for p in ("together one", "together two", "together three")]
        jobs = [await started_job(w, h) for h in handles]
        await w.fake.wait_for(lambda: len(w.sim.submissions) == 3, what="three submissions")
        # The bot is down while all three are blocked upstream; back up, it settles them at once.
        await outage(w, 0.6)
        for job in jobs:
            await w.wait_job(job.id, "blocked")
        await w.fake.wait_for(lambda: len(w.fake.world.dm_channels) > 0, what="a DM")
        await w.wait_idle()
        await w.fake.settle()
        assert len(owner_dms(w)) == 1
        assert len(await w.services.moderation.open_items(w.guild)) == 3


async def test_a_moderation_channel_the_bot_cannot_post_in(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        mods = mod_channel(w, bot_can_send=False)
        text = await ask(w, w.admin, "settings mod-channel", {"channel": mods})
        assert "I cannot post there yet" in text and f"<#{mods}>" in text
        one = await blocked(w, "cannot post this")
        await blocked(w, "nor this")
        # Both items tried the channel and were refused (else one may post itself later).
        await w.fake.wait_for(
            lambda: (
                len(
                    [
                        c
                        for c in w.fake.calls
                        if c.method == "POST"
                        and c.path.endswith(f"/channels/{mods}/messages")
                        and c.status == 403
                    ]
                )
                >= 2
            ),
            what="both review items refused by the channel",
        )
        # The owner's DM takes a few requests of its own (guild, user, DM channel, message).
        await w.fake.wait_for(lambda: owner_dms(w), what="the owner's DM")
        await w.fake.settle()
        [dm] = owner_dms(w)
        assert f"I cannot post in <#{mods}>" in dm["content"]
        assert w.fake.channel_messages(mods) == []
        assert "not posted" in await ask(w, w.moderator, "mod queue")

        w.fake.set_bot_channel_permissions(mods, allow=SEND_MESSAGES)
        await w.fake.settle()
        handle = await w.fake.slash(
            w.guild, w.channel, w.admin, "settings mod-channel", {"channel": mods}
        )
        assert "cannot post" not in text_of(await answer(handle))
        assert (
            text_of(await handle.wait_for_followup(2)) == "Posted 2 waiting review item(s) there."
        )
        await item_message(w, one)
        assert len(owner_dms(w)) == 1


async def test_the_log_channel_gets_one_line_per_finished_job(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        logs = w.fake.add_channel(w.guild, "image-log")
        await w.set_guild(mod_channel_id=mods)
        await ask(w, w.admin, "settings log-channel", {"channel": logs})
        await w.grant(1000)

        done = await started_job(w, await request(w, "a sunny meadow"))
        done = await w.wait_job(done.id, "done")
        result = await w.wait_result(done.id)
        stopped = await blocked(w, "a stormy meadow")
        item = await item_message(w, stopped)
        lines = await w.fake.wait_for(
            lambda: len(w.fake.channel_messages(logs)) >= 2 and w.fake.channel_messages(logs),
            what="two log lines",
        )
        first, second = (m["content"] for m in lines)
        assert first.startswith(f"✅ <@{w.member}> · gpt-image-2 create · {COST} Buzz · done")
        assert f"job `{done.id}`" in first
        assert f"/{w.guild}/{w.channel}/{result['id']})" in first
        assert second.startswith(f"🚫 <@{w.member}> · gpt-image-2 create · {COST} Buzz · blocked")
        assert f"/{w.guild}/{w.channel}/{stopped.status_message_id})" in second

        await press(w, item, "Refund", w.moderator)
        await w.wait_status(stopped, "refunded")
        await w.fake.settle()
        assert len(w.fake.channel_messages(logs)) == 2

        # Held jobs: the approval is not an ending (one line when the job is done); a rejection is.
        await w.bot.filters.add(w.guild, "meadow", w.moderator)
        approved = await held(w, "a quiet meadow")
        await press(w, await item_message(w, approved), "Approve", w.moderator)
        await w.wait_result(approved.id)
        await w.wait_job(approved.id, "done")
        rejected = await held(w, "a loud meadow")
        await press(w, await item_message(w, rejected), "Reject", w.moderator)
        await w.wait_status(rejected, "will not run")
        await w.fake.settle()
        lines = [m["content"] for m in w.fake.channel_messages(logs)]
        assert len(lines) == 4, lines
        assert f"{COST} Buzz · done · job `{approved.id}`" in lines[2]
        assert f"0 Buzz · rejected · job `{rejected.id}`" in lines[3]


async def finished_with_log_line(w, prompt: str, logs: int) -> None:
    """A member's job ends, and its log line has been tried (posted, or refused)."""

    def tries() -> int:
        return len([c for c in w.fake.calls if c.path.startswith(f"/api/v10/channels/{logs}")])

    before = tries()
    job = await started_job(w, await request(w, prompt))
    await w.wait_job(job.id, "done")
    await w.fake.wait_for(lambda: tries() > before, what=f"the log line of {job.id}")
    await w.fake.wait_for(lambda: not w.bot.publisher._log_lines, what="the log line's end")
    await w.fake.settle()


@pytest.mark.parametrize("change", ["deleted", "no send"])
async def test_a_log_channel_the_bot_can_no_longer_post_in_tells_the_owner_once(
    tmp_path, caplog, change
):
    """The log channel is deleted, or the bot loses Send Messages there: the log lines are
    lost, so the server's owner is told once how to fix it (not once per job), with one
    warning in the bot's log and no traceback. Fixed and broken again, they are told again."""
    async with world(tmp_path) as w:
        logs = w.fake.add_channel(w.guild, "image-log")
        await ask(w, w.admin, "settings log-channel", {"channel": logs})
        await w.grant(1000)
        await finished_with_log_line(w, "a first meadow", logs)
        assert len(w.fake.channel_messages(logs)) == 1
        if change == "deleted":
            delete_channel(w, logs)
        else:
            w.fake.set_bot_channel_permissions(logs, deny=SEND_MESSAGES)
        await w.fake.settle()
        for n in range(2):
            await finished_with_log_line(w, f"meadow {n}", logs)
        [dm] = await w.fake.wait_for(lambda: owner_dms(w), what="the owner's DM")
        assert f"<#{logs}>" in dm["content"] and "/settings log-channel" in dm["content"]
        await finished_with_log_line(w, "one more meadow", logs)
        assert len(owner_dms(w)) == 1
        # Admins read it too (an owner may take no DMs).
        shown = await ask(w, w.admin, "settings show")
        assert f"Log channel: <#{logs}> ⚠️ I cannot post there: " in shown
        warnings = [r for r in caplog.records if "log lines" in r.getMessage()]
        assert [r.levelname for r in warnings if r.levelno >= logging.WARNING] == ["WARNING"]
        if change == "no send":
            w.fake.set_bot_channel_permissions(logs)
            await w.fake.settle()
            await finished_with_log_line(w, "a fixed meadow", logs)
            assert len(w.fake.channel_messages(logs)) == 2
            assert "⚠️" not in await ask(w, w.admin, "settings show")
            w.fake.set_bot_channel_permissions(logs, deny=SEND_MESSAGES)
            await w.fake.settle()
            await finished_with_log_line(w, "a broken meadow", logs)
            await w.fake.wait_for(lambda: len(owner_dms(w)) == 2, what="the owner's second DM")
    assert traced(caplog) == []
