"""Discord refusing or failing the bot's answer is an expected fault: one warning line, no
traceback, nothing held, and the bot goes on serving."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from bot.civitai.simulator import Outcome
from bot.store import db as dbmod
from tests.discord.harness import answer, buttons, field_value, finished, started, text_of, world
from tests.fakes import rest as fake_rest
from tests.fakes.errors import ApiError
from tests.store.read_only import unwritable, write_locked


async def create(w, prompt: str, **extra):
    """A member's /create gpt-image-2 at low quality (13 Buzz)."""
    options = {"prompt": prompt, "quality": "low"}
    return await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options, **extra)


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_command_acknowledged_too_late_is_one_warning_and_holds_nothing(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.fake.ack_deadline = 0.0  # Discord's 3 seconds have passed when the bot answers
        late = await create(w, "a lighthouse")
        await w.fake.wait_for(lambda: late.record.rejections, what="the late answer refused")
        await w.fake.settle()
        assert await w.jobs() == [] and await w.holds() == 0
        assert await w.available() == 1000 and w.sim.submissions == []
        assert traced(caplog) == []
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            str(late.id) in m and "not acknowledged within 3 seconds" in m for m in warned
        ), warned

        w.fake.ack_deadline = 3.0
        again = await create(w, "a lighthouse")
        job = await started(w, again)
        assert (await w.wait_job(job.id, "done")).charged


async def test_a_button_acknowledged_too_late_is_one_warning(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.grant(1000)
        handle = await create(w, "a lighthouse")
        _, result = await finished(w, await started(w, handle))
        w.fake.ack_deadline = 0.0
        click = await w.fake.click(int(result["id"]), buttons(result)["Details"], w.member)
        await w.fake.wait_for(lambda: click.record.rejections, what="the late answer refused")
        await w.fake.settle()
        assert traced(caplog) == []
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(str(click.id) in m and "3 seconds" in m for m in warned), warned
        assert [j.status.value for j in await w.jobs()] == ["done"]


async def test_a_request_while_the_database_is_locked_is_refused_privately(
    tmp_path, caplog, monkeypatch
):
    """An operator's sqlite3 shell holds the write lock: the member is told plainly that
    nothing was done, the operator reads why in one warning, and nothing is held."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path) as w:
        await w.grant(1000)
        with write_locked(tmp_path / "bot.sqlite3"):
            handle = await create(w, "a lighthouse")
            text = text_of(
                await handle.wait_for_original(lambda m: "nothing was done" in m["content"])
            )
        assert handle.ephemeral and "could not save that just now" in text
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000
        assert w.sim.submissions == []
        assert traced(caplog) == []
        assert any("database is busy" in r.getMessage() for r in caplog.records)


async def test_a_request_while_the_disk_refuses_writes_is_refused_privately(tmp_path, caplog):
    """The database's disk turns read-only mid-run: the member is told plainly that nothing
    was done, the operator reads why in one warning (not a bug's traceback), nothing is
    held, and the bot serves again once the disk takes writes."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        with unwritable(tmp_path / "bot.sqlite3"):
            handle = await create(w, "a lighthouse")
            text = text_of(
                await handle.wait_for_original(lambda m: "nothing was done" in m["content"])
            )
        assert handle.ephemeral and "could not save that just now" in text
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000
        assert w.sim.submissions == []
        assert traced(caplog) == []
        assert any("read-only" in r.getMessage() for r in caplog.records)
        job = await started(w, await create(w, "a lighthouse"))
        assert (await w.wait_job(job.id, "done")).charged == 13


async def test_a_lock_taken_just_after_admission_still_runs_the_paid_job_and_says_so(
    tmp_path, caplog, monkeypatch
):
    """The member's Buzz is held and the status message posted; recording that message then
    meets an operator's sqlite3 shell holding the write lock. The job is paid for: it runs
    at once, its status message follows it to the end, and the member is never told that
    nothing was done or charged (they would ask again and pay twice)."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path) as w:
        await w.grant(1000)
        # The status message is posted (a follow-up); only its answer waits for the lock.
        gate = w.fake.hold_requests("POST", r"/webhooks/\d+/[^/]+$", answer_only=True)
        handle = await create(w, "a lighthouse")
        status = await handle.wait_for_followup(1)
        with write_locked(tmp_path / "bot.sqlite3"):
            gate.set()
            await w.fake.wait_for(
                lambda: any("database is busy" in r.getMessage() for r in caplog.records),
                what="the write refused",
            )
        [job] = await w.jobs()
        job = await w.wait_job(job.id, "done", timeout=20)  # not after the reconciler's minute
        assert job.charged == 13 and await w.available() == 1000 - 13
        assert len(w.results_of(job.id)) == 1
        # The message is recorded once the lock is gone, and brought up to date.
        async with asyncio.timeout(10):
            while (job := await w.wait_job(job.id, "done")).status_message_id is None:
                await asyncio.sleep(0.05)
        assert job.status_message_id == int(status["id"])
        await w.wait_status(job, "Done")
        said = [text_of(m) for m in handle.followups] + [text_of(await handle.original())]
        assert not [t for t in said if "nothing was done" in t], said
        assert traced(caplog) == []


@pytest.fixture
def refuse_posts(monkeypatch):
    """refuse_posts[channel_id] = ApiError: the fake answers posts of messages there with it."""
    errors: dict[int, ApiError] = {}
    original = fake_rest.RestApi.create_message

    async def create_message(self, request):
        channel_id = int(request.match_info["channel_id"])
        if channel_id in errors:
            await request.read()
            raise errors[channel_id]
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "create_message", create_message)
    return errors


PAST_THE_TOKEN = timedelta(minutes=14, seconds=30)


async def test_a_channel_that_refuses_the_result_with_a_400_sends_it_by_dm(
    tmp_path, caplog, refuse_posts
):
    """An archived thread answers 400 (50083), not 403: the result still goes by DM at once,
    charged once, instead of waiting out the delivery deadline with tracebacks."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        refuse_posts[w.channel] = ApiError(400, 50083, "Thread is archived")
        h = await create(w, "an archived thread", created_at=datetime.now(UTC) - PAST_THE_TOKEN)
        job = await w.wait_job((await started(w, h)).id, "done", timeout=30)
        [dm] = w.fake.dm_messages(w.member)
        assert dm["attachments"] and job.charged == 13
        assert await w.available() == 1000 - 13
        # Its status message, still there, does not send the member looking "below".
        status = await w.wait_status(job, "Done")
        assert "sent to you by DM" in field_value(status, "Status")
    assert traced(caplog) == []


async def test_two_deletes_at_once_both_answer_deleted(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.grant(1000)
        handle = await create(w, "a lantern")
        _, result = await finished(w, await started(w, handle))
        gate = w.fake.hold_requests("DELETE", r"/channels/\d+/messages/\d+$")
        delete = buttons(result)["Delete"]
        first = await w.fake.click(int(result["id"]), delete, w.member)
        second = await w.fake.click(int(result["id"]), delete, w.moderator)
        await w.fake.wait_for(
            lambda: [c for c in w.fake.calls if c.method == "DELETE"], what="a delete sent"
        )
        await asyncio.sleep(0.5)  # the second click reaches its delete (queued behind the first)
        gate.set()
        for click in (first, second):
            assert text_of(await answer(click)) == "Deleted."
    assert traced(caplog) == []


@pytest.mark.parametrize(("outcome", "shown"), [("succeed", "Done"), ("fail", "failed")])
async def test_the_status_ends_right_when_discord_expires_the_token_first(tmp_path, outcome, shown):
    """The bot's clock runs a minute behind Discord's: the token it thinks alive is refused.
    The status message is edited directly instead (for a failure it is all the member sees)."""
    lag = timedelta(seconds=60)
    async with world(
        tmp_path, clock=lambda: datetime.now(UTC) - lag, jobs={"token_margin_seconds": 5}
    ) as w:
        await w.grant(1000)
        w.sim.script(Outcome(outcome, runtime=400), prompt="late status")
        h = await create(
            w, "late status", created_at=datetime.now(UTC) - timedelta(minutes=14, seconds=58)
        )
        job = await started(w, h)
        job = await w.wait_job(job.id, "done" if outcome == "succeed" else "failed", timeout=30)
        await w.wait_status(job, shown, timeout=10)


@pytest.mark.parametrize("how", ["replaced", "deleted"])
async def test_a_database_file_replaced_under_the_bot_refuses_paid_work(tmp_path, caplog, how):
    """An operator restores an old backup over the database (or deletes it) while the bot runs:
    the bot went on holding and charging Buzz in the old file, which nothing will read again
    (every charge since lost at the next start). It must refuse new work, say so plainly, and
    keep what the old file holds where the operator can find it."""
    db = tmp_path / "bot.sqlite3"
    async with world(tmp_path) as w:
        await w.grant(1000)
        if how == "replaced":
            other = tmp_path / "restored.sqlite3"
            sqlite3.connect(other).close()
            os.replace(other, db)
        else:
            db.unlink()
        handle = await create(w, "a lighthouse")
        text = text_of(await handle.wait_for_original(lambda m: "nothing was done" in m["content"]))
        # Not "try again soon": every try fails until the operator restarts the bot.
        assert handle.ephemeral and "until its operator restarts it" in text
        assert "try again" not in text.lower()
        assert w.sim.submissions == [] and await w.holds() == 0
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and f"{db} was {how}" in errors[0], errors
        [kept] = tmp_path.glob("bot.sqlite3.orphaned-*")
        assert str(kept) in errors[0]
    with sqlite3.connect(kept) as conn:  # the grant made before, safe
        assert conn.execute("SELECT SUM(amount) FROM ledger_entries").fetchone()[0] == 1000
