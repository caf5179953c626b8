"""AI pre-moderation when things go wrong: a failed check's hold belongs to its own request,
the fallback is the guild's setting when the check fails (not when it started), a check whose
answer or charge was lost is found again and counted once, and checks cut off by a stop are
settled at the next start."""

from __future__ import annotations

import asyncio
import json
import time

from bot.civitai.simulator import Outcome
from bot.engine import open_checks
from bot.store import db as dbmod
from tests.discord.harness import answer, buttons, text_of, world
from tests.discord_admin.helpers import audit_actions, mod_channel, started_job
from tests.safety.test_premoderation import enhanced, generations, moderation_runs, switch_on
from tests.store.read_only import write_locked

CHECK = 1  # what the simulator charges for an xGuardModeration step


async def test_a_failed_check_before_an_enhancement_never_holds_another_request(tmp_path):
    """A check before an enhancement fails and holds the request; the member cancels at the
    cost question. Their next, different request with the same words is checked on its own:
    it must not inherit the first request's failed check and wait for the moderators."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w), confirm_above=50)
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(Outcome("fail", step="xGuardModeration"))  # the first check only
        first = await enhanced(w, "a lighthouse at dusk", "medium")  # 78 Buzz: asked first
        question = await answer(first)
        assert "Go ahead?" in text_of(question)
        click = await w.fake.click(int(question["id"]), buttons(question)["Cancel"], w.member)
        await click.response()
        options = {"prompt": "a lighthouse at dusk", "quality": "low", "size": "1024x1024"}
        second = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        job = await w.wait_job((await started_job(w, second)).id, "done", "held")
        assert job.status.value == "done"
        assert len(moderation_runs(w)) == 2 and len(generations(w)) == 1
        outcomes = [
            json.loads(d)["outcome"] for _, _, d in await audit_actions(w, "premoderation.check")
        ]
        assert outcomes == ["failed", "clean"]


async def test_a_failed_check_falls_back_as_the_guild_says_when_it_fails(tmp_path):
    """An admin sets the fallback to let requests through while a (slow) check runs; the
    check then fails. The guild's setting now decides, not the one read when it started:
    the request runs instead of waiting for the moderators."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await switch_on(w)  # if the check fails: hold it for review
        w.sim.script(Outcome("fail", step="xGuardModeration", runtime=100), prompt="a lighthouse")
        options = {"prompt": "a lighthouse", "quality": "low", "size": "1024x1024"}
        handle = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        await w.fake.wait_for(lambda: moderation_runs(w) or None, timeout=10, what="the check")
        assert "let it through" in await switch_on(w, **{"on-failure": "allow"})
        job = await w.wait_job((await started_job(w, handle)).id, "done", "held")
        assert job.status.value == "done" and len(generations(w)) == 1


def processing(w):
    """Whether the first check runs upstream now (for wait_for)."""

    def check() -> bool | None:
        runs = moderation_runs(w)
        found = runs and w.sim.workflow_for(runs[0]["externalId"])
        return bool(found and found.status(time.monotonic()) == "processing") or None

    return check


async def charged_to_guild(w, amount: int) -> None:
    """Until the guild's pre-moderation spend is `amount` (it is counted beside the start)."""
    async with asyncio.timeout(10):
        while await w.services.safety.guild_charges(w.guild) != amount:
            await asyncio.sleep(0.05)


async def test_a_check_cut_off_by_a_stop_is_stopped_and_counted_at_the_next_start(tmp_path):
    """The bot stops while a member's prompt is being checked. The check runs on upstream
    and is charged: at the next start it is found, stopped, and its charge counted against
    the guild's budget once (settled: nothing left for another start to count)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(Outcome("never", step="xGuardModeration", charge=3), prompt="a lighthouse")
        options = {"prompt": "a lighthouse", "quality": "low", "size": "1024x1024"}
        await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        await w.fake.wait_for(lambda: moderation_runs(w) or None, timeout=10, what="the check")
        await w.restart_bot()
        await charged_to_guild(w, 3)
        [check] = moderation_runs(w)
        stopped = w.sim.workflow_for(check["externalId"])
        assert stopped is not None and stopped.canceled_at is not None
        assert await w.services.safety.open_checks() == []  # nothing left to count again
        [(_, _, details)] = await audit_actions(w, "premoderation.check")
        assert json.loads(details) == {"cost": 3, "outcome": "settled later"}


async def charge_left_unread(w) -> None:
    """A lighthouse whose check is made and charged 3 upstream, then every read of it fails
    (after its cancel too): let through, its charge left to read later."""
    await w.grant(1000)
    await switch_on(w, **{"on-failure": "allow"})
    w.sim.script(Outcome("never", step="xGuardModeration", charge=3), prompt="a lighthouse")
    options = {"prompt": "a lighthouse", "quality": "low", "size": "1024x1024"}
    first = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
    await w.fake.wait_for(processing(w), timeout=10, what="the check running")
    w.sim.fault(503, route="get", times=2)  # the check's next read, and the one after
    await w.wait_job((await started_job(w, first)).id, "done")


async def test_a_check_whose_charge_could_not_be_read_is_counted_later(tmp_path, monkeypatch):
    """A check made and charged upstream, then every read of it failed (after its cancel
    too): what it cost is not known. It is not counted as 0 and forgotten: read again before
    a later check, its charge joins the guild's pre-moderation spend."""
    monkeypatch.setattr(open_checks, "SETTLE_EVERY", 0.0)  # a minute, in production
    async with world(tmp_path, civitai={"max_retries": 0}) as w:
        await charge_left_unread(w)
        assert await w.services.safety.guild_charges(w.guild) == 0  # not known yet, not 0
        options = {"prompt": "a harbour", "quality": "low", "size": "1024x1024"}
        second = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        await w.wait_job((await started_job(w, second)).id, "done")
        await charged_to_guild(w, 3 + CHECK)  # settled beside the second check
        outcomes = [json.loads(d) for _, _, d in await audit_actions(w, "premoderation.check")]
        assert sorted((o["outcome"], str(o["cost"])) for o in outcomes) == [
            ("clean", str(CHECK)),
            ("failed", "not known yet"),
            ("settled later", "3"),
        ]


async def test_an_unread_charge_while_the_database_is_locked_is_still_counted(
    tmp_path, monkeypatch
):
    """An operator's sqlite3 shell holds the write lock while a check runs, is charged, and
    its charge cannot be read: neither the check nor its failure can be written down then.
    Once the database takes writes again the check is written down and its charge read
    again and counted, not lost with the refused request."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    monkeypatch.setattr(open_checks, "SETTLE_EVERY", 0.0)  # a minute, in production
    async with world(tmp_path, civitai={"max_retries": 0}) as w:
        await w.grant(1000)
        await switch_on(w, **{"on-failure": "allow"})
        w.sim.script(Outcome("never", step="xGuardModeration", charge=3), prompt="a lighthouse")
        options = {"prompt": "a lighthouse", "quality": "low", "size": "1024x1024"}
        with write_locked(tmp_path / "bot.sqlite3"):
            refused = await w.fake.slash(
                w.guild, w.channel, w.member, "create gpt-image-2", options
            )
            await w.fake.wait_for(processing(w), timeout=10, what="the check running")
            w.sim.fault(503, route="get", times=2)  # the check's next read, and the one after
            assert "could not save that just now" in text_of(await answer(refused))
        options = {"prompt": "a harbour", "quality": "low", "size": "1024x1024"}
        second = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        await w.wait_job((await started_job(w, second)).id, "done")
        await charged_to_guild(w, 3 + CHECK)


async def test_a_check_asked_for_while_the_bot_stops_starts_no_settling_pass(tmp_path, monkeypatch):
    """The stop has begun (open checks closed) but a member's request still comes in during
    the drain: its check starts no background pass over open checks, which would look them
    up on a client and database about to close (a traceback, or a task left pending)."""
    monkeypatch.setattr(open_checks, "SETTLE_EVERY", 0.0)  # a minute, in production
    async with world(tmp_path, civitai={"max_retries": 0}) as w:
        await charge_left_unread(w)
        assert len(await w.services.safety.open_checks()) == 1

        await w.bot.engine.admission.screening.open_checks.close()  # the stop's first step
        looked_up = w.sim.requests["query"]
        options = {"prompt": "a harbour", "quality": "low", "size": "1024x1024"}
        second = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        await w.wait_job((await started_job(w, second)).id, "done")
        await asyncio.sleep(0.2)  # a pass, if one had started, would have looked by now
        assert w.sim.requests["query"] == looked_up
        assert len(await w.services.safety.open_checks()) == 1  # for the next start
