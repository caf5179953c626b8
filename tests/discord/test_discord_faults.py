"""Discord refusing or failing the bot's answer is an expected fault: one warning line, no
traceback, nothing held, and the bot goes on serving."""

from __future__ import annotations

import logging
import sqlite3

from bot.store import db as dbmod
from tests.discord.harness import buttons, finished, started, text_of, world


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_command_acknowledged_too_late_is_one_warning_and_holds_nothing(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.fake.ack_deadline = 0.0  # Discord's 3 seconds have passed when the bot answers
        late = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a lighthouse", "quality": "low"},
        )
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
        again = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a lighthouse", "quality": "low"},
        )
        job = await started(w, again)
        assert (await w.wait_job(job.id, "done")).charged


async def test_a_button_acknowledged_too_late_is_one_warning(tmp_path, caplog):
    async with world(tmp_path) as w:
        await w.grant(1000)
        handle = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a lighthouse", "quality": "low"},
        )
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
        other = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            handle = await w.fake.slash(
                w.guild,
                w.channel,
                w.member,
                "create gpt-image-2",
                options={"prompt": "a lighthouse", "quality": "low"},
            )
            text = text_of(
                await handle.wait_for_original(lambda m: "nothing was done" in m["content"])
            )
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert handle.ephemeral and "could not save that just now" in text
        assert await w.jobs() == [] and await w.holds() == 0 and await w.available() == 1000
        assert w.sim.submissions == []
        assert traced(caplog) == []
        assert any("database is busy" in r.getMessage() for r in caplog.records)
