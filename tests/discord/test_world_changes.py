"""The world changing under a running job (a thread archived or locked by a moderator, the
operator switching the bot from one image service to the other): the Buzz settles once, the
images are not lost, and the member hears how the job ended, once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.civitai.simulator import Outcome
from bot.store.jobs import JobStatus, NewJob
from tests.discord.harness import settings_for, started, text_of, world
from tests.discord.test_openai_lane import openai_world
from tests.fakes.state import EMBED_LINKS, VIEW_CHANNEL

OLD = timedelta(minutes=14, seconds=30)  # the token is dead by the time the job ends


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("locked", [False, True])
async def test_a_job_that_fails_in_a_thread_archived_meanwhile_is_told_privately(
    tmp_path, caplog, locked
):
    """A moderator archives (or locks) the thread while the job runs: its status message
    there can no longer be edited (Discord answers 400, 50083), so it would say
    "Generating" for good. The member is told by DM how it ended, once."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        thread = w.fake.add_thread(w.channel, "kites", owner_id=w.member)
        await w.fake.settle()
        w.sim.script(Outcome("fail", runtime=100), prompt="a kite")
        h = await w.fake.slash(
            w.guild,
            thread,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a kite"},
            created_at=datetime.now(UTC) - OLD,
        )
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        w.fake.archive_thread(thread, locked=locked)
        job = await w.wait_job(job.id, "failed", timeout=30)
        [dm] = await w.fake.wait_for(
            lambda: w.fake.dm_messages(w.member), what="the ending told by DM"
        )
        await w.wait_idle()
        await w.fake.settle()
        assert "failed" in text_of(dm) and "nothing was charged" in text_of(dm)
        assert len(w.fake.dm_messages(w.member)) == 1
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []


async def test_a_result_kept_back_in_a_thread_locked_meanwhile_is_told_once(tmp_path, caplog):
    """A moderator locks the thread while the job runs, and its result is rated above what
    the thread allows: the member was sent a copy of the status message ("not posted in this
    channel") by DM, then the notice saying why. One DM, the one that says why."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        thread = w.fake.add_thread(w.channel, "kites", owner_id=w.member)
        await w.fake.settle()
        h = await w.fake.slash(
            w.guild,
            thread,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a kite at night [sim:r]", "quality": "low"},
            created_at=datetime.now(UTC) - OLD,
        )
        job = await started(w, h)
        w.fake.archive_thread(thread, locked=True)
        job = await w.wait_job(job.id, "blocked", timeout=30)
        await w.fake.wait_for(lambda: w.fake.dm_messages(w.member), what="the member told")
        await w.wait_idle()
        await w.fake.settle()
        [dm] = w.fake.dm_messages(w.member)
        assert "rated R" in text_of(dm) and "A moderator will review it" in text_of(dm)
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


async def test_a_job_on_the_orchestrator_when_the_operator_switches_to_openai_is_delivered(
    tmp_path, caplog, monkeypatch
):
    """The operator restarts the bot with BOT_PROVIDER=openai (keeping CIVITAI_TOKEN) while a
    member's workflow runs on the orchestrator, which goes on and charges for it. It was
    failed as "made for another image service": the member lost the images, and what the
    orchestrator charged was booked nowhere. It is followed there to its end instead, posted
    once and settled from what it cost; new requests go to the OpenAI lane."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # its built-in simulator
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome(runtime=300), prompt="a kite")
        options = {"prompt": "a kite", "quality": "low"}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        w.settings = settings_for(
            tmp_path, provider="openai", civitai={"token": "kept"}, discord={"dev_guild": w.guild}
        )
        await w.restart_bot()
        assert w.services.provider == "openai"
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        assert len(w.results_of(job.id)) == 1 and len(w.sim.submissions) == 1
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


async def test_a_result_on_the_orchestrator_waiting_to_be_posted_is_posted_after_a_switch(
    tmp_path, caplog, monkeypatch
):
    """The workflow has ended (its images wait on the orchestrator's blob store, paid for)
    but Discord has not taken the post yet when the operator restarts with BOT_PROVIDER=openai:
    the images are fetched from the orchestrator and posted once."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.fake.hold_requests("POST", r"/channels/\d+/messages$")  # the channel post waits
        options = {"prompt": "a kite", "quality": "low"}
        late = datetime.now(UTC) - OLD
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options, created_at=late
        )
        job = await started(w, h)
        await w.wait_job(job.id, "delivering")
        await w.fake.wait_for(
            lambda: [c for c in w.fake.calls if c.method == "POST" and "/channels/" in c.path],
            what="the result's post, held",
        )
        w.settings = settings_for(
            tmp_path, provider="openai", civitai={"token": "kept"}, discord={"dev_guild": w.guild}
        )
        w.fake.gates.clear()
        await w.restart_bot()
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        assert len(w.results_of(job.id)) == 1
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


async def test_a_result_of_the_openai_lane_waiting_to_be_posted_is_posted_after_a_switch_back(
    tmp_path, caplog
):
    """The OpenAI lane's job has ended (its images, paid for, are in the database) but Discord
    has not taken the post yet when the operator restarts on the orchestrator: the Civitai
    lane looked for a workflow it never had (an AssertionError's traceback at every try for
    half an hour, then the images given up as lost). They are posted from the database."""
    async with openai_world(tmp_path) as (w, _):
        await w.grant(1000)
        w.fake.hold_requests("POST", r"/channels/\d+/messages$")  # the channel post waits
        options = {"prompt": "a kite", "quality": "low"}
        late = datetime.now(UTC) - OLD  # the result goes to the channel, not a follow-up
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options, created_at=late
        )
        job = await started(w, h)
        await w.wait_job(job.id, "delivering")
        await w.fake.wait_for(
            lambda: [c for c in w.fake.calls if c.method == "POST" and "/channels/" in c.path],
            what="the result's post, held",
        )
        w.settings = settings_for(tmp_path, discord={"dev_guild": w.guild})
        w.fake.gates.clear()  # the new process's post goes through (the old one never lands)
        await w.restart_bot()
        assert w.services.provider == "civitai"
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        assert len(w.results_of(job.id)) == 1
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


async def test_a_request_for_the_openai_lane_not_yet_made_ends_clearly_after_a_switch_back(
    tmp_path, caplog
):
    """A job the OpenAI lane had not called yet when the operator restarts on the orchestrator:
    it ends saying so, nothing charged, without sending the orchestrator a step it refuses."""
    async with openai_world(tmp_path) as (w, _):
        await w.grant(1000)

        def queued_in(tx):  # as an admission just before the stop leaves it
            w.services.jobs.insert_in(
                tx,
                NewJob(
                    id="j0000000000000001",
                    guild_id=w.guild,
                    channel_id=w.channel,
                    member_id=w.member,
                    model="gpt-image-2",
                    operation="createImage",
                    options={"prompt": "a kite"},
                    step={"$type": "openaiImages", "endpoint": "generations", "fields": {}},
                    estimate=13,
                    status=JobStatus.QUEUED,
                ),
            )
            w.services.ledger.place_hold_in(tx, w.guild, w.member, "j0000000000000001", 13)

        await w.services.db.write(queued_in)
        w.settings = settings_for(tmp_path, discord={"dev_guild": w.guild})
        await w.restart_bot()
        job = await w.wait_job("j0000000000000001", "failed", timeout=30)
        assert job.error == "this request was made for another image service; nothing was charged"
        assert w.sim.submissions == [] and job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []


async def test_a_result_the_channel_takes_only_after_its_deadline_goes_by_dm(tmp_path, caplog):
    """An admin sets a 2-hour slowmode while two members' late jobs run (the bot has no
    Manage Messages): the channel takes the first result, then asks the bot to wait two
    hours. The second result was tried again and again until its delivery deadline, then
    given up (the images lost to the member); it goes to them by DM at once instead."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(1000, w.other)
        late = datetime.now(UTC) - OLD
        jobs = []
        for member, prompt, runtime in ((w.member, "first", 100), (w.other, "second", 300)):
            w.sim.script(Outcome(runtime=runtime), prompt=prompt)
            options = {"prompt": prompt, "quality": "low"}
            h = await w.fake.slash(
                w.guild, w.channel, member, "create gpt-image-2", options, created_at=late
            )
            jobs.append(await started(w, h))
        w.fake.set_slowmode(w.channel, 7200)
        first = await w.wait_job(jobs[0].id, "done", timeout=30)
        second = await w.wait_job(jobs[1].id, "done", "failed", timeout=30)
        assert second.status.value == "done", second.error
        assert len(w.results_of(first.id)) == 1 and w.results_of(second.id) == []
        [dm] = w.fake.dm_messages(w.other)
        assert dm["attachments"] and f"result of job {second.id}" in text_of(dm)
        assert "slowmode" in text_of(dm)
        assert second.charged == 13 and await w.available(w.other) == 1000 - 13
    assert traced(caplog) == []


async def test_a_result_in_a_channel_that_took_embed_links_away_goes_by_dm(tmp_path, caplog):
    """An admin takes Embed Links from the bot in the channel while a late job runs: Discord
    takes the result's post but drops its embed without a word (the job's card, its cost,
    and the footer by which the bot finds a post again, so as never to post twice). The
    result goes to the member by DM, whole, saying why."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome(runtime=100), prompt="a kite")
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            {"prompt": "a kite", "quality": "low"},
            created_at=datetime.now(UTC) - OLD,
        )
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        w.fake.set_bot_channel_permissions(w.channel, deny=EMBED_LINKS)
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        assert job.status.value == "done", job.error
        assert not [m for m in w.channel_messages() if m.get("attachments")]
        [dm] = w.fake.dm_messages(w.member)
        assert dm["attachments"] and f"result of job {job.id}" in text_of(dm)
        assert "Embed Links" in text_of(dm)
        assert job.delivered_message_ids == [int(dm["id"])]
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


async def test_an_ending_no_one_could_be_told_of_is_shown_when_the_channel_is_open_again(
    tmp_path, caplog
):
    """An admin takes View Channel from the bot while the job runs, it fails, and the member
    takes no DMs: nowhere to tell them. When the admin gives the access back, the job's
    status message shows how it ended (it said the job was running for good)."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome("fail", runtime=100), prompt="a kite")
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a kite"},
            created_at=datetime.now(UTC) - timedelta(minutes=14, seconds=57),  # token dead
        )
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        w.fake.set_bot_channel_permissions(w.channel, deny=VIEW_CHANNEL)
        w.fake.set_accepts_dms(w.member, False)
        job = await w.wait_job(job.id, "failed", timeout=30)
        await w.wait_idle()
        await w.fake.settle()
        assert "failed" not in text_of(w.status_message(job))
        w.fake.set_bot_channel_permissions(w.channel)
        await w.wait_status(job, "failed", timeout=10)
        assert job.charged == 0 and await w.available() == 1000
    assert traced(caplog) == []


async def test_a_stop_does_not_wait_for_a_job_followed_on_the_orchestrator_after_a_switch(
    tmp_path, caplog, monkeypatch
):
    """After the operator switched to the OpenAI lane, a workflow still runs on the
    orchestrator and the bot follows it. Stopping the bot (SIGTERM) waited the whole drain time
    for it, as for an OpenAI call that cannot be picked up again; following it can be, after the
    restart, so the stop is as quick as on the orchestrator alone."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # its built-in simulator
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome(runtime=100_000), prompt="a kite")  # runs well past the stop
        options = {"prompt": "a kite", "quality": "low"}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        w.settings = settings_for(
            tmp_path,
            provider="openai",
            civitai={"token": "kept"},
            discord={"dev_guild": w.guild},
            jobs={"shutdown_drain_seconds": 600},
        )
        await w.restart_bot()
        looked = w.sim.requests["get"]
        await w.fake.wait_for(
            lambda: w.sim.requests["get"] > looked, what="the workflow followed again"
        )
        caplog.clear()
        async with asyncio.timeout(15):  # the drain time is 600 s
            await w._stop()
        assert not [r for r in caplog.records if "waiting up to" in r.getMessage()]
        job = await w.wait_job(job.id, "running")  # followed again at the next start
        assert job.charged is None or job.charged == 0
    assert traced(caplog) == []
