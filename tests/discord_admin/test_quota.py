"""/quota: allowances, grants and takes, the server budget, and the ledger export — each answer
shows the values now in force, bad input is refused with the allowed range."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from tests.discord.harness import answer, is_ephemeral, text_of, world
from tests.discord_admin.helpers import (
    COST,
    ask,
    blocked,
    item_message,
    mod_channel,
    option,
    press,
    request,
    started_job,
)
from tests.fakes import DriverError
from tests.store.read_only import write_locked


async def test_allowance_rules_answer_with_the_values_in_force(tmp_path):
    async with world(tmp_path) as w:
        low = w.fake.add_role(w.guild, "regulars")
        high = w.fake.add_role(w.guild, "patrons")
        carol = w.fake.add_member(w.guild, "carol", roles=[low, high])

        text = await ask(w, w.admin, "quota default", {"amount": 200, "period": "weekly"})
        assert text.startswith("Default allowance is now **200 Buzz weekly**.")
        text = await ask(w, w.admin, "quota role", {"role": low, "amount": 300, "period": "daily"})
        assert text == f"<@&{low}> now gives **300 Buzz daily**."
        text = await ask(
            w, w.admin, "quota role", {"role": high, "amount": 1500, "period": "monthly"}
        )
        assert text == f"<@&{high}> now gives **1,500 Buzz monthly**."
        text = await ask(
            w, w.admin, "quota member", {"member": w.other, "amount": 50, "period": "none"}
        )
        assert text == f"<@{w.other}>'s allowance is now **50 Buzz once**."

        rules = await ask(w, w.admin, "quota show")
        assert "Default: 200 Buzz weekly" in rules
        assert f"<@&{high}>: 1,500 Buzz monthly" in rules
        assert f"<@&{low}>: 300 Buzz daily" in rules
        assert "1 member override(s)" in rules and "Budget: no cap" in rules

        # The highest of carol's roles counts; bob's own rule beats everything; alice has
        # the server default.
        carol_text = await ask(w, w.admin, "quota show", {"member": carol})
        assert "Balance: **1,500** (0 from grants, 1,500 refill due on next use)" in carol_text
        assert f"Allowance: 1,500 monthly — from role <@&{high}>" in carol_text
        bob_text = await ask(w, w.admin, "quota show", {"member": w.other})
        assert "Allowance: 50 once — from member override" in bob_text
        assert "Spent so far: 0" in bob_text  # a one-off allowance has no period
        alice_text = await ask(w, w.admin, "quota show", {"member": w.member})
        assert "Allowance: 200 weekly — from guild default" in alice_text

        # What the member can actually spend follows: alice's 200 pays for a 78 request.
        job = await started_job(w, await request(w, "a teacup"))
        await w.wait_job(job.id, "done")
        alice_text = await ask(w, w.admin, "quota show", {"member": w.member})
        assert f"Balance: **{200 - COST}** (0 from grants)" in alice_text
        assert f"Spent this period: {COST}" in alice_text


async def test_grant_take_and_their_limits(tmp_path):
    async with world(tmp_path) as w:
        text = await ask(
            w, w.admin, "quota grant", {"member": w.member, "amount": 500, "reason": "contest"}
        )
        assert text == f"Granted 500 Buzz to <@{w.member}>; their balance is now 500."
        text = await ask(w, w.admin, "quota take", {"member": w.member, "amount": 120})
        assert text == f"Took 120 Buzz from <@{w.member}>; their balance is now 380."
        text = await ask(w, w.admin, "quota take", {"member": w.member, "amount": 381})
        # Named as every refused option is, with what is allowed.
        assert text == "**amount**: cannot take 381 Buzz: the member has 380 available."
        assert await w.available() == 380

        for sub in ("grant", "take"):
            o = option(w, "quota", sub, "amount")
            assert (o["min_value"], o["max_value"]) == (1, 10_000_000)
        for sub in ("default", "role", "member", "budget"):
            o = option(w, "quota", sub, "amount")
            assert (o["min_value"], o["max_value"]) == (0, 10_000_000)
            periods = [c["value"] for c in option(w, "quota", sub, "period")["choices"]]
            assert periods == ["none", "daily", "weekly", "monthly"]
        for bad in (0, 10_000_001):
            with pytest.raises(DriverError, match="outside registered range"):
                await w.fake.slash(
                    w.guild, w.channel, w.admin, "quota grant", {"member": w.member, "amount": bad}
                )
        with pytest.raises(DriverError, match="registered choices"):
            await w.fake.slash(
                w.guild, w.channel, w.admin, "quota default", {"amount": 5, "period": "hourly"}
            )
        assert await w.available() == 380


@pytest.mark.parametrize("sub", ["grant", "take"])
async def test_a_grant_or_take_that_waits_for_a_lock_still_answers_the_admin(tmp_path, sub):
    """An operator's sqlite3 shell holds the write lock past Discord's 3 seconds; the change
    waits its turn and is made. The admin must read that it was made: with no answer
    ("the application did not respond") they would run it again, and grant (or take) twice."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.fake.ack_deadline = 0.3  # Discord's 3 seconds, scaled down
        with write_locked(tmp_path / "bot.sqlite3"):
            handle = await w.fake.slash(
                w.guild, w.channel, w.admin, f"quota {sub}", {"member": w.member, "amount": 200}
            )
            await asyncio.sleep(0.6)  # the lock outlasts the time to acknowledge
        told = text_of(await answer(handle))
        total = 1200 if sub == "grant" else 800
        assert told.endswith(f"their balance is now {total:,}."), told
        assert await w.available() == total


@pytest.mark.parametrize(
    ("command", "options", "said"),
    [
        ("quota default", {"amount": 200, "period": "weekly"}, "Default allowance is now"),
        ("quota budget", {"amount": 900, "period": "daily"}, "Server budget: **900 Buzz daily**"),
        ("quota clear", {"rule": "default"}, "Removed the server's default"),
        ("settings confirm-above", {"buzz": 50}, "Confirm requests above: 50 Buzz"),
        ("settings model", {"model": "dall-e-2", "enabled": False}, "Models on:"),
        ("settings concurrency", {"per-member": 2, "per-guild": 3}, "Jobs at once: 2 per member"),
    ],
)
async def test_a_rule_or_setting_that_waits_for_a_lock_still_answers_the_admin(
    tmp_path, command, options, said
):
    """The write waits its turn past Discord's 3 seconds (an operator's sqlite3 shell holds
    the lock) and is made: the admin must be told so, not "the application did not respond"
    for a change that was made all the same."""
    async with world(tmp_path) as w:
        await ask(w, w.admin, "quota default", {"amount": 100, "period": "weekly"})
        w.fake.ack_deadline = 0.3  # Discord's 3 seconds, scaled down
        with write_locked(tmp_path / "bot.sqlite3"):
            handle = await w.fake.slash(w.guild, w.channel, w.admin, command, options)
            await asyncio.sleep(0.6)  # the lock outlasts the time to acknowledge
        message = await answer(handle)
        assert is_ephemeral(message)
        assert said in text_of(message), text_of(message)


async def test_the_server_budget_caps_what_members_may_spend(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(1000, w.other)
        text = await ask(w, w.admin, "quota budget", {"amount": 100, "period": "daily"})
        assert text == "Server budget: **100 Buzz daily**; 0 used so far this period, 100 left."

        job = await started_job(w, await request(w, "the first picture"))
        await w.wait_job(job.id, "done")
        handle = await request(w, "one too many", w.other)
        message = await answer(handle)
        assert is_ephemeral(message)
        assert f"the server's Buzz budget is spent: this needs {COST}, 22 is left" in text_of(
            message
        )
        assert len(await w.jobs()) == 1 and await w.available(w.other) == 1000

        shown = await ask(w, w.admin, "quota show")
        assert f"Budget: 100 daily · {COST} used · 22 left" in shown
        text = await ask(w, w.admin, "quota budget", {"amount": 0, "period": "daily"})
        assert text == "The server has no Buzz budget cap now."
        job = await started_job(w, await request(w, "now it fits", w.other))
        await w.wait_job(job.id, "done")


async def test_a_budget_for_all_time_reads_as_such(tmp_path):
    """A budget with the period 'none' is one cap for good: it read '**500 Buzz once**; 78
    used so far this period' (no period, and 'once' is what a one-off allowance means)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        job = await started_job(w, await request(w, "the first picture"))
        await w.wait_job(job.id, "done")
        text = await ask(w, w.admin, "quota budget", {"amount": 500, "period": "none"})
        assert text == (
            f"Server budget: **500 Buzz in all** (no reset); {COST} used so far, {500 - COST} left."
        )
        shown = await ask(w, w.admin, "quota show")
        assert f"Budget: 500 in all (no reset) · {COST} used · {500 - COST} left" in shown


async def test_export_rows_match_the_ledger_exactly(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await ask(w, w.admin, "quota grant", {"member": w.member, "amount": 1000, "reason": "hi"})
        await ask(w, w.admin, "quota grant", {"member": w.other, "amount": 40})
        await ask(w, w.admin, "quota take", {"member": w.member, "amount": 100, "reason": "oops"})
        job = await started_job(w, await request(w, "an ordinary job"))
        await w.wait_job(job.id, "done")
        stopped = await blocked(w, "a blocked job")
        await press(w, await item_message(w, stopped), "Refund", w.moderator)
        assert await w.available() == 1000 - 100 - COST

        handle = await w.fake.slash(w.guild, w.channel, w.admin, "quota export")
        message = await answer(handle)
        assert is_ephemeral(message)
        [attachment] = message["attachments"]
        assert attachment["filename"] == f"ledger-{w.guild}.csv"
        rows = list(csv.DictReader(io.StringIO(w.fake.attachment_bytes(attachment).decode())))
        entries = await w.services.db.fetchall(
            "SELECT id, member_id, kind, amount, delta_allowance + delta_grant, job_id, actor_id,"
            " reason FROM ledger_entries WHERE guild_id = ? ORDER BY id",
            (w.guild,),
        )
        assert message["content"] == f"{len(entries)} entries."
        assert len(rows) == len(entries)
        running: dict[int, int] = {}
        for row, entry in zip(rows, entries, strict=True):
            ident, member, kind, amount, delta, job_id, actor, reason = tuple(entry)
            running[member] = running.get(member, 0) + delta
            assert row["entry_id"] == str(ident)
            assert row["member_id"] == str(member)
            assert row["kind"] == kind
            assert row["amount"] == str(amount)
            assert row["delta"] == str(delta)
            assert row["balance_after"] == str(running[member])
            assert row["job_id"] == (job_id or "")
            assert row["actor_id"] == (str(actor) if actor else "")
            assert row["reason"] == (reason or "")
        assert [(r["kind"], r["member_id"] == str(w.member), r["delta"]) for r in rows] == [
            ("grant", True, "1000"),
            ("grant", False, "40"),
            ("adjust", True, "-100"),
            ("hold", True, f"-{COST}"),  # the ordinary job
            ("capture", True, "0"),
            ("hold", True, f"-{COST}"),  # the blocked one
            ("capture", True, "0"),
            ("refund", True, f"{COST}"),
        ]
        last = [r for r in rows if r["member_id"] == str(w.member)][-1]
        assert int(last["balance_after"]) == await w.available()
        assert rows[1]["balance_after"] == "40"


async def test_take_and_grant_see_the_balance_that_show_shows(tmp_path):
    async with world(tmp_path) as w:
        await ask(w, w.admin, "quota default", {"amount": 200, "period": "weekly"})
        shown = await ask(w, w.admin, "quota show", {"member": w.member})
        assert "Balance: **200**" in shown
        text = await ask(w, w.admin, "quota take", {"member": w.member, "amount": 50})
        assert text == f"Took 50 Buzz from <@{w.member}>; their balance is now 150."
        text = await ask(w, w.admin, "quota grant", {"member": w.member, "amount": 10})
        assert text == f"Granted 10 Buzz to <@{w.member}>; their balance is now 160."
