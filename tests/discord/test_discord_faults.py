"""Discord refusing or failing the bot's answer is an expected fault: one warning line, no
traceback, nothing held, and the bot goes on serving."""

from __future__ import annotations

import logging

from tests.discord.harness import buttons, finished, started, world


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
