"""AI pre-moderation end to end: before any Buzz is held, the prompt goes through an
xGuardModeration workflow (prompt mode) on the simulator. Flagged prompts are held for review
with their labels, scores and the model's reason shown to moderators only; clean ones go on;
a failing check falls back as configured. The guild pays for the checks, not the member."""

from __future__ import annotations

import json
import time

from bot.civitai.simulator import Outcome
from bot.store import db as dbmod
from tests.discord.harness import answer, buttons, field_value, text_of, world
from tests.discord_admin.helpers import (
    COST,
    ask,
    audit_actions,
    item_message,
    mod_channel,
    press,
    request,
    started_job,
)
from tests.safety.helpers import seen_by_member
from tests.store.read_only import write_locked

CHECK = 1  # what the simulator charges for an xGuardModeration step


def moderation_runs(w) -> list[dict]:
    return [s for s in w.sim.submissions if s["steps"][0]["$type"] == "xGuardModeration"]


def generations(w) -> list[dict]:
    return [s for s in w.sim.submissions if s["steps"][0]["$type"] == "imageGen"]


async def switch_on(w, **options) -> str:
    return await ask(w, w.admin, "settings premoderation", {"enabled": True, **options})


async def test_pre_moderation_is_off_by_default(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        assert "AI pre-moderation: off" in await ask(w, w.admin, "settings show")
        job = await started_job(w, await request(w, "a cat [sim:flag]"))
        await w.wait_job(job.id, "done")
        assert moderation_runs(w) == []


async def test_a_flagged_prompt_is_held_and_only_moderators_see_why(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        text = await switch_on(w)
        assert "AI pre-moderation: on (all labels; if the check fails: hold it for review)" in text
        w.sim.script(Outcome(flag_labels=("violence",)), prompt="two cats at dawn")
        handle = await request(w, "two cats at dawn")
        job = await started_job(w, handle)
        job = await w.wait_job(job.id, "held")
        await w.wait_status(job, "review")

        [check] = moderation_runs(w)
        assert check["externalId"] == f"{job.id}-premod"
        assert check["steps"][0]["input"] == {
            "mode": "prompt",
            "positivePrompt": "two cats at dawn",
            "includeReasoning": True,
            "storeFullResponse": False,
        }
        assert generations(w) == []  # nothing ran
        assert job.hold_amount == COST and await w.available() == 1000 - COST

        item = await item_message(w, job)
        assert "Held by AI pre-moderation" in text_of(item)
        assert field_value(item, "Reason") == "AI pre-moderation flagged: violence (0.97)"
        source = field_value(item, "Source")
        assert source.startswith("**AI pre-moderation**\n· violence: 0.97\n")
        assert "violence, the model's reason: The prompt matches the violence policy" in source
        text = await ask(w, w.moderator, "mod queue", {"source": "premoderation"})
        assert "held (AI pre-moderation)" in text
        # The member reads that it waits for review, never what was found.
        seen = seen_by_member(w, handle, [w.channel]).lower()
        assert "review" in seen
        for word in ("violence", "flag", "label", "pre-moderation", "0.97"):
            assert word not in seen, word

        # The check cost the guild, not the member: in the audit and the guild's budget.
        [(actor, target, details)] = await audit_actions(w, "premoderation.check")
        assert (actor, target) == (w.member, f"job:{job.id}")
        assert json.loads(details) == {"cost": CHECK, "outcome": "flagged", "labels": ["violence"]}
        assert await w.services.safety.guild_charges(w.guild) == CHECK
        budget = await w.services.ledger.budget_state(w.guild, 10_000, "monthly")
        assert budget.used == COST + CHECK

        assert await press(w, item, "Approve", w.moderator) == (
            "Review #1: approved: the job runs now."
        )
        done = await w.wait_job(job.id, "done")
        assert done.charged == COST and await w.available() == 1000 - COST


async def test_a_clean_prompt_goes_on(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await switch_on(w)
        job = await started_job(w, await request(w, "a quiet harbour at dawn"))
        await w.wait_job(job.id, "done")
        assert len(moderation_runs(w)) == 1 and len(generations(w)) == 1
        assert await w.services.moderation.item_for_job(job.id) is None
        assert await w.available() == 1000 - COST  # the member paid the image only
        [(_, _, details)] = await audit_actions(w, "premoderation.check")
        assert json.loads(details)["outcome"] == "clean"
        assert await w.services.safety.guild_charges(w.guild) == CHECK


async def test_a_check_made_while_the_database_is_locked_is_paid_once_and_recorded(
    tmp_path, monkeypatch
):
    """An operator's sqlite3 shell holds the write lock: the request is refused (nothing done),
    but its prompt was already checked upstream, at the guild's cost. Asking again while the
    lock holds does not pay for the check again, and once it is gone the guild's budget
    counts every check the orchestrator charged for."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path) as w:
        await w.grant(1000)
        await switch_on(w)
        with write_locked(tmp_path / "bot.sqlite3"):
            for _ in range(2):
                refused = await request(w, "a quiet harbour at dawn")
                assert "could not save that just now" in text_of(await answer(refused))
        job = await started_job(w, await request(w, "a quiet harbour at dawn"))
        await w.wait_job(job.id, "done")
        assert len(moderation_runs(w)) == 1  # one check, reused while it was not recorded
        assert await w.services.safety.guild_charges(w.guild) == CHECK
        assert await w.available() == 1000 - COST


async def test_a_failed_check_made_while_the_database_is_locked_is_recorded_later(
    tmp_path, monkeypatch
):
    """A check that failed upstream and kept its charge, while an operator's sqlite3 shell
    holds the write lock: the request is refused (nothing done), but the guild paid for the
    check. Its cost is recorded once the database takes writes again, not lost."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path) as w:
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(Outcome("block_charged", step="xGuardModeration"), prompt="a lighthouse")
        with write_locked(tmp_path / "bot.sqlite3"):
            refused = await request(w, "a lighthouse")
            assert "could not save that just now" in text_of(await answer(refused))
        [failed] = moderation_runs(w)
        charged = w.sim.workflow_for(failed["externalId"])
        assert charged is not None and charged.net_charge(time.monotonic()) == CHECK
        job = await started_job(w, await request(w, "a quiet harbour at dawn"))
        await w.wait_job(job.id, "done")
        assert await w.services.safety.guild_charges(w.guild) == 2 * CHECK
        outcomes = [
            json.loads(d)["outcome"] for _, _, d in await audit_actions(w, "premoderation.check")
        ]
        assert sorted(outcomes) == ["clean", "failed"]


async def test_only_the_chosen_labels_are_checked(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        text = await switch_on(w, labels="hate")
        assert "AI pre-moderation: on (hate;" in text
        assert "unknown label hat" in await switch_on(w, labels="hat")
        job = await started_job(w, await request(w, "a cat [sim:flag:sexual]"))
        await w.wait_job(job.id, "done")
        [check] = moderation_runs(w)
        assert check["steps"][0]["input"]["labels"] == ["hate"]


async def test_a_failing_check_holds_the_request_by_default(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(Outcome("fail", step="xGuardModeration"))
        handle = await request(w, "a lighthouse")
        job = await w.wait_job((await started_job(w, handle)).id, "held")
        item = await item_message(w, job)
        assert "could not check this prompt" in field_value(item, "Reason")
        assert "held by the fallback" in field_value(item, "Source")
        assert generations(w) == []
        [(_, _, details)] = await audit_actions(w, "premoderation.check")
        assert json.loads(details)["outcome"] == "failed"
        assert "check" not in seen_by_member(w, handle, [w.channel]).lower()


async def test_a_failing_check_lets_the_request_through_when_configured(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        text = await switch_on(w, **{"on-failure": "allow"})
        assert "if the check fails: let it through" in text
        w.sim.script(Outcome("fail", step="xGuardModeration"))
        job = await started_job(w, await request(w, "a lighthouse"))
        await w.wait_job(job.id, "done")
        assert len(generations(w)) == 1


async def test_an_approved_request_whose_result_is_rated_above_the_channel_goes_back(tmp_path):
    """A job may need moderators twice: held before it runs, kept from its channel after."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await switch_on(w)
        job = await started_job(w, await request(w, "a fox [sim:flag] [sim:r]"))
        job = await w.wait_job(job.id, "held")
        await press(w, await item_message(w, job), "Approve", w.moderator)
        job = await w.wait_job(job.id, "blocked")
        second = await w.services.moderation.item_for_job(job.id)
        assert second is not None and (second.id, second.kind, second.open) == (2, "mature", True)


async def test_pre_moderation_needs_the_orchestrator(tmp_path):
    """On the OpenAI lane without a CIVITAI_TOKEN nothing can run the check: an admin is told
    so rather than having every request held by the fallback."""
    from tests.discord.test_openai_lane import openai_world

    async with openai_world(tmp_path) as (w, _):
        text = await switch_on(w)
        assert text.startswith("**enabled**: AI pre-moderation runs on the Civitai orchestrator")
        assert "AI pre-moderation: off" in await ask(w, w.admin, "settings show")


async def enhanced(w, prompt: str, quality: str = "low"):
    """/create gpt-image-2 with enhance:True."""
    options = {"prompt": prompt, "quality": quality, "enhance": True}
    return await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options)


def enhancements(w) -> list[dict]:
    return [s for s in w.sim.submissions if s["steps"][0]["$type"] == "promptEnhancement"]


async def test_a_flagged_prompt_is_not_enhanced_first(tmp_path):
    """With enhance:True the prompt is checked before it goes upstream to be enhanced: a flagged
    one waits for review as written, without an enhancement (nor its charge), checked once."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(Outcome(flag_labels=("violence",)), prompt="two cats fighting")
        handle = await enhanced(w, "two cats fighting", "medium")
        job = await w.wait_job((await started_job(w, handle)).id, "held")
        assert (job.model, job.prompt) == ("gpt-image-2", "two cats fighting")
        assert enhancements(w) == [] and generations(w) == []
        assert len(moderation_runs(w)) == 1  # the verdict is reused by admission
        assert [j.model for j in await w.jobs()] == ["gpt-image-2"]
        item = await item_message(w, job)
        assert field_value(item, "Reason") == "AI pre-moderation flagged: violence (0.97)"
        assert await w.services.safety.guild_charges(w.guild) == CHECK
        outcomes = [
            json.loads(d)["outcome"] for _, _, d in await audit_actions(w, "premoderation.check")
        ]
        assert outcomes == ["flagged", "flagged"]  # the check, then its reuse (cost 0)


async def test_a_clean_prompt_kept_after_enhancement_is_not_checked_again(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await switch_on(w)
        h = await enhanced(w, "a quiet harbour at dawn", "low")
        choice = await h.wait_for_followup(1, timeout=20)
        assert len(moderation_runs(w)) == 1 and len(enhancements(w)) == 1
        # The check came first: nothing went upstream before it.
        assert w.sim.submissions[0]["steps"][0]["$type"] == "xGuardModeration"
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Keep mine"], w.member)
        image = await w.wait_job((await started_job(w, click)).id, "done")
        assert image.prompt == "a quiet harbour at dawn"
        assert len(moderation_runs(w)) == 1 and len(generations(w)) == 1
        assert await w.services.safety.guild_charges(w.guild) == CHECK


async def test_an_enhanced_prompt_is_checked_before_its_image(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await switch_on(w)
        h = await enhanced(w, "a cat on a windowsill", "low")
        choice = await h.wait_for_followup(1, timeout=20)
        click = await w.fake.click(int(choice["id"]), buttons(choice)["Use enhanced"], w.member)
        image = await w.wait_job((await started_job(w, click)).id, "done")
        assert image.prompt != "a cat on a windowsill"
        checked = [r["steps"][0]["input"]["positivePrompt"] for r in moderation_runs(w)]
        assert checked == ["a cat on a windowsill", image.prompt]
        assert await w.services.safety.guild_charges(w.guild) == 2 * CHECK


async def test_a_check_whose_labels_all_errored_is_a_failed_check(tmp_path):
    """xGuard answers per label; a label its model could not score carries `error`, with a
    score of 0 and nothing triggered. A verdict where every label errored checked nothing: it
    is a failed check (the guild's fallback holds it), not a clean prompt let through."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(Outcome(label_errors=("*",)), prompt="a lighthouse in a storm")
        handle = await request(w, "a lighthouse in a storm")
        job = await w.wait_job((await started_job(w, handle)).id, "held")
        item = await item_message(w, job)
        assert "could not check this prompt" in field_value(item, "Reason")
        assert generations(w) == []
        [(_, _, details)] = await audit_actions(w, "premoderation.check")
        assert json.loads(details)["outcome"] == "failed"
        assert "check" not in seen_by_member(w, handle, [w.channel]).lower()


async def test_a_slow_check_before_an_enhancement_still_answers_the_member(tmp_path):
    """With enhance:True the prompt is checked before it is enhanced. A check slower than
    Discord's 3 seconds must not leave the command unanswered ("the application did not
    respond"), with no enhancement and nothing the member could do but ask again."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(
            Outcome(runtime=60, step="xGuardModeration"), prompt="a quiet harbour at night"
        )
        w.fake.ack_deadline = 0.3  # Discord's 3 seconds, scaled down (the check takes ~0.6 s)
        h = await enhanced(w, "a quiet harbour at night", "low")
        choice = await h.wait_for_followup(1, timeout=20)
        assert h.record.rejections == []
        assert "Keep mine" in buttons(choice)
        assert len(moderation_runs(w)) == 1 and len(enhancements(w)) == 1


async def test_a_check_that_fails_before_an_enhancement_holds_the_request_once(tmp_path):
    """With enhance:True the check before the enhancement fails and the guild's fallback holds
    the request as written. Admission must not check it again: a second check was paid for
    (and waited for) again, and when it passed, the request ran unenhanced and unreviewed
    though the member had asked for an enhancement."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await switch_on(w)
        w.sim.script(Outcome("fail", step="xGuardModeration"))  # the first check only
        handle = await enhanced(w, "a lighthouse at dusk", "low")
        job = await w.wait_job((await started_job(w, handle)).id, "held")
        assert job.prompt == "a lighthouse at dusk"
        assert enhancements(w) == [] and generations(w) == []
        assert len(moderation_runs(w)) == 1
        item = await item_message(w, job)
        assert "could not check this prompt" in field_value(item, "Reason")
        outcomes = [
            json.loads(d)["outcome"] for _, _, d in await audit_actions(w, "premoderation.check")
        ]
        assert outcomes == ["failed", "failed"]  # the check, then its reuse (cost 0)


async def test_a_check_that_evaluated_none_of_the_chosen_labels_is_a_failed_check(
    tmp_path, monkeypatch
):
    """The orchestrator silently ignores labels it does not know (the schema says so): once it
    renames one the guild chose, the check answers no result at all. That checked nothing: it
    is a failed check (the guild's fallback holds it), not a clean prompt let through."""
    import bot.civitai.simulator.steps.moderation as sim_moderation

    renamed = tuple(n for n in sim_moderation.DEFAULT_LABELS if n != "violence")
    monkeypatch.setattr(sim_moderation, "DEFAULT_LABELS", renamed)
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        await switch_on(w, labels="violence")
        handle = await request(w, "two knights duelling")
        job = await w.wait_job((await started_job(w, handle)).id, "held", "done")
        assert job.status.value == "held" and generations(w) == []
        item = await item_message(w, job)
        assert "could not check this prompt" in field_value(item, "Reason")
        [(_, _, details)] = await audit_actions(w, "premoderation.check")
        assert json.loads(details)["outcome"] == "failed"
