"""Discord failing around a result post (the channel's look-up, a post created but answered 5xx,
a long 429 on a private follow-up) is a passing fault: the result is posted later, where it
belongs, exactly once; only a refusal sends it elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.civitai.simulator import Outcome
from tests.discord.harness import buttons, is_ephemeral, text_of, world
from tests.discord.test_delivery_stalls import rate_limited
from tests.discord.test_discord_faults import PAST_THE_TOKEN, traced
from tests.discord.test_job_faults import fail_user_lookup_once
from tests.fakes import rest as fake_rest
from tests.fakes.errors import ApiError


@pytest.fixture
def fail_lookups(monkeypatch):
    """fail_lookups[channel_id] = [status, ...]: the next look-ups of that channel (GET) are
    answered with those statuses, one each (429: asking to wait an hour)."""
    failures: dict[int, list[int]] = {}
    original = fake_rest.RestApi.get_channel

    async def get_channel(self, request):
        pending = failures.get(int(request.match_info["channel_id"]))
        if pending:
            status = pending.pop(0)
            if status == 429:
                return rate_limited(3600.0)
            raise ApiError(status, 0, f"{status}: Service Unavailable")
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "get_channel", get_channel)
    return failures


@pytest.mark.parametrize("status", [503, 429])
async def test_a_failed_look_up_of_the_channel_is_retried_not_sent_by_dm(
    tmp_path, caplog, fail_lookups, status
):
    """A thread the bot has not cached (just after a login): Discord answers 503, or asks to
    wait an hour, when the bot looks it up to post the result. A passing fault: the result is
    posted in the thread a little later, not sent to the member's DMs as if refused."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        parent = w.fake.world.channel(w.channel)
        thread = w.fake.world.new_thread(parent, "uncached", w.member).id  # no THREAD_CREATE
        assert w.bot.get_channel(thread) is None
        w.sim.script(Outcome("succeed"), prompt="a thread")
        fail_lookups[thread] = [status]
        h = await w.fake.slash(
            w.guild,
            thread,
            w.member,
            "create gpt-image-2",
            {"prompt": "a thread", "quality": "low"},
            created_at=datetime.now(UTC) - PAST_THE_TOKEN,
        )
        await h.wait_for_followup(1, timeout=30)
        [job] = await w.jobs()
        job = await w.wait_job(job.id, "done", "failed", timeout=60)
        assert job.status.value == "done", job.error
        assert fail_lookups[thread] == []
        posted = [
            m for m in w.fake.channel_messages(thread) if f"result of job {job.id}" in text_of(m)
        ]
        assert len(posted) == 1 and posted[0]["attachments"]
        assert job.delivered_message_ids == [int(posted[0]["id"])]
        assert w.fake.dm_messages(w.member) == []
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


@pytest.fixture
def create_then_fail(monkeypatch):
    """create_then_fail.append(status): the next result post in a channel is carried out (the
    message exists) but answered with that 5xx, as when Discord fails after creating it."""
    statuses: list[int] = []
    original = fake_rest.RestApi.create_message

    async def create_message(self, request):
        response = await original(self, request)
        if statuses and request.content_type.startswith("multipart/"):  # files: a result
            status = statuses.pop(0)
            raise ApiError(status, 0, f"{status}: Bad Gateway")
        return response

    monkeypatch.setattr(fake_rest.RestApi, "create_message", create_message)
    return statuses


async def test_copies_left_by_posts_answered_5xx_are_taken_down_to_one(
    tmp_path, caplog, create_then_fail
):
    """Discord creates the result message but answers 502: discord.py posts it again by itself,
    and that copy is answered 503. When the bot looks before posting again it finds two copies
    of the result: it keeps one and takes the other down, instead of recording both."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        create_then_fail.extend([502, 503])
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            {"prompt": "a copy", "quality": "low"},
            created_at=datetime.now(UTC) - PAST_THE_TOKEN,
        )
        await h.wait_for_followup(1, timeout=30)
        [job] = await w.jobs()
        job = await w.wait_job(job.id, "done", "failed", timeout=60)
        assert job.status.value == "done", job.error
        assert create_then_fail == []
        [result] = w.results_of(job.id)
        assert job.delivered_message_ids == [int(result["id"])]
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []


@pytest.fixture
def limit_choice(monkeypatch):
    """limit_choice.append(seconds): the next private follow-up offering the enhanced prompt's
    choice is answered 429 asking to wait that long."""
    waits: list[float] = []
    original = fake_rest.RestApi.execute_webhook

    async def execute_webhook(self, request):
        if waits and b"Keep mine" in await request.read():
            return rate_limited(waits.pop())
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "execute_webhook", execute_webhook)
    return waits


async def test_a_long_rate_limit_on_the_enhanced_prompts_choice_is_retried_later(
    tmp_path, caplog, limit_choice
):
    """Discord asks the bot to wait an hour before the private follow-up with the enhanced
    prompt: the bot does not sleep an hour holding a delivery turn (the follow-up used the
    bot's own session, which sleeps out any 429), it tries again soon, once."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        limit_choice.append(3600.0)
        options = {"prompt": "a cat on a windowsill", "quality": "low", "enhance": True}
        h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)
        choice = await h.wait_for_followup(1, timeout=30)
        assert limit_choice == [] and is_ephemeral(choice)
        assert {"Use enhanced", "Keep mine", "Cancel"} <= set(buttons(choice))
        [job] = await w.jobs()
        job = await w.wait_job(job.id, "done")
        assert job.delivered_message_ids == [int(choice["id"])]
        assert len([m for m in h.followups if "Keep mine" in str(m)]) == 1
        assert job.charged == 1 and await w.available() == 999
    assert traced(caplog) == []


async def test_discord_failing_the_member_look_up_for_a_late_choice_is_retried(
    tmp_path, caplog, monkeypatch
):
    """Past the command's token the enhanced prompt goes by DM; Discord answers 503 while the
    bot looks the member up: a passing outage, tried again, not "cannot be told privately"
    with the enhancement failed."""
    failures = fail_user_lookup_once(monkeypatch)
    async with world(tmp_path) as w:
        await w.grant(1000)
        options = {"prompt": "a cat on a windowsill", "quality": "low", "enhance": True}
        late = datetime.now(UTC) - PAST_THE_TOKEN
        await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options, created_at=late
        )
        job = await w.only_job()
        job = await w.wait_job(job.id, "done", "failed", timeout=60)
        assert job.status.value == "done", job.error
        assert failures == []
        [dm] = w.fake.dm_messages(w.member)
        assert job.delivered_message_ids == [int(dm["id"])] and "enhanced" in text_of(dm)
    assert traced(caplog) == []


@pytest.mark.parametrize("token_alive", [False, True])
async def test_a_post_discord_made_twice_after_a_5xx_leaves_one_copy(
    tmp_path, caplog, monkeypatch, token_alive
):
    """Discord creates the result message but answers 502, and discord.py's own retry of the
    post succeeds: the bot is told of one message while the channel shows two. It looks once
    it has seen a 5xx go by, keeps the copy it was told of and takes the other down."""
    statuses: list[int] = [502]
    handler = "execute_webhook" if token_alive else "create_message"
    original = getattr(fake_rest.RestApi, handler)

    async def created_then_502(self, request):
        response = await original(self, request)
        if statuses and request.content_type.startswith("multipart/"):  # files: a result
            status = statuses.pop(0)
            raise ApiError(status, 0, f"{status}: Bad Gateway")
        return response

    monkeypatch.setattr(fake_rest.RestApi, handler, created_then_502)
    async with world(tmp_path) as w:
        await w.grant(1000)
        created_at = datetime.now(UTC) - (timedelta(0) if token_alive else PAST_THE_TOKEN)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            {"prompt": "one copy", "quality": "low"},
            created_at=created_at,
        )
        await h.wait_for_followup(1, timeout=30)
        [job] = await w.jobs()
        job = await w.wait_job(job.id, "done", "failed", timeout=60)
        assert job.status.value == "done", job.error
        assert statuses == []
        [result] = w.results_of(job.id)
        assert job.delivered_message_ids == [int(result["id"])]
        assert job.charged == 13 and await w.available() == 1000 - 13
    assert traced(caplog) == []
