"""AI pre-moderation when things go wrong: a failed check's hold belongs to its own request,
the fallback is the guild's setting when the check fails (not when it started), a check whose
answer or charge was lost is found again and counted once, and checks cut off by a stop are
settled at the next start."""

from __future__ import annotations

import json

from bot.civitai.simulator import Outcome
from tests.discord.harness import answer, buttons, text_of, world
from tests.discord_admin.helpers import audit_actions, mod_channel, started_job
from tests.safety.test_premoderation import enhanced, generations, moderation_runs, switch_on

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
