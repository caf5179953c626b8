"""/buzz balance, /buzz history, /jobs and /cancel job: a member's own numbers, privately."""

from __future__ import annotations

import asyncio

from bot.civitai.simulator import Outcome
from tests.discord.harness import World, answer, field_value, finish, started, text_of, world
from tests.discord_admin.helpers import Clock, held, item_message, mod_channel, press
from tests.discord_admin.helpers import ask as admin_ask


async def ask(w: World, user: int, command: str, **options) -> str:
    h = await w.fake.slash(w.guild, w.channel, user, command, options=options or None)
    message = await answer(h)
    assert h.ephemeral, message
    return text_of(message)


async def test_balance_and_history_show_the_members_numbers(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(40, w.other)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a kite", "quality": "medium"},
        )
        job, _ = await finish(w, h)  # 78 Buzz

        balance = await ask(w, w.member, "buzz balance")
        assert "**922 Buzz** available" in balance
        assert "Spent this period: 78" in balance

        history = await ask(w, w.member, "buzz history")
        assert "+1,000 granted" in history
        assert "held for a job" in history and job.id in history
        assert "charged" in history
        assert history.count("granted") == 1  # not bob's grant

        assert "**40 Buzz** available" in await ask(w, w.other, "buzz balance")


async def test_a_member_cannot_look_at_another_members_balance_or_jobs(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000, w.other)
        for command in ("buzz balance", "jobs"):
            text = await ask(w, w.member, command, member=w.other)
            assert "Only moderators" in text and "1,000" not in text
        as_mod = await ask(w, w.moderator, "buzz balance", member=w.other)
        assert "**1,000 Buzz** available" in as_mod and "bob" in as_mod


async def test_jobs_lists_the_members_jobs(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(1000, w.other)
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "mine"}
        )
        job, result = await finish(w, h)
        theirs = await w.fake.slash(
            w.guild, w.channel, w.other, "create dall-e-2", options={"prompt": "theirs"}
        )
        their_job, _ = await finish(w, theirs)

        text = await ask(w, w.member, "jobs")
        assert job.id in text and "mine" in text and "Done" in text
        assert result["id"] in text  # a link to the result
        assert their_job.id not in text and "theirs" not in text
        assert their_job.id in await ask(w, w.moderator, "jobs", member=w.other)


async def test_cancel_job_offers_the_running_job_and_cancels_it(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(1000, w.other)
        w.sim.script(Outcome("never"))
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "stop me"}
        )
        job = await started(w, h)
        await w.wait_job(job.id, "running")
        done = await w.fake.slash(
            w.guild, w.channel, w.member, "create dall-e-2", options={"prompt": "finished"}
        )
        finished_job, _ = await finish(w, done)

        offered = await w.fake.autocomplete(w.guild, w.channel, w.member, "cancel", focused="job")
        assert [c["value"] for c in offered] == [job.id]
        assert "stop me" in offered[0]["name"]
        assert await w.fake.autocomplete(w.guild, w.channel, w.other, "cancel", focused="job") == []

        # Another member cannot cancel it by typing its id.
        refused = await ask(w, w.other, "cancel", job=job.id)
        assert "only the member who asked" in refused.lower()
        await asyncio.sleep(0.1)
        assert (await w.services.jobs.job(job.id)).status.value == "running"

        text = await ask(w, w.member, "cancel", job=job.id)
        assert f"Canceled job `{job.id}`" in text, text
        job = await w.wait_job(job.id, "canceled")
        assert await w.available() == 1000 - job.charged - finished_job.charged
        await w.wait_status(job, "Canceled")


async def test_cancel_job_does_not_offer_a_job_already_posting_its_images(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.fake.upload_limit = 10  # no image fits: the job stays in "posting the images"
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "stuck"}
        )
        job = await started(w, h)
        await w.wait_job(job.id, "delivering")
        assert (
            await w.fake.autocomplete(w.guild, w.channel, w.member, "cancel", focused="job") == []
        )


async def test_cancel_job_offers_a_job_held_for_review_and_cancels_it(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        added = await w.fake.slash(
            w.guild, w.channel, w.moderator, "mod filter-add", options={"pattern": "dragon"}
        )
        await answer(added)
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "create gpt-image-2", options={"prompt": "a dragon"}
        )
        job = await started(w, h)
        job = await w.wait_job(job.id, "held")
        assert await w.available() == 1000 - 286  # held for the review

        offered = await w.fake.autocomplete(w.guild, w.channel, w.member, "cancel", focused="job")
        assert [c["value"] for c in offered] == [job.id]
        text = await ask(w, w.member, "cancel", job=job.id)
        assert job.id in text
        job = await w.wait_job(job.id, "canceled")
        assert job.charged == 0 and await w.available() == 1000
        assert w.sim.submissions == []


async def test_history_tells_expired_allowance_from_an_admins_take(tmp_path):
    """Allowance held across a refill and released after it partly expires (a job held for
    review over midnight UTC, then rejected): an `adjust` entry the ledger writes for the job,
    not an admin's take. /buzz history said "taken by an admin" for it, sending the member and
    the admins after a take nobody made."""
    clock = Clock()
    async with world(tmp_path, clock=clock) as w:
        ledger = w.services.ledger
        await ledger.set_allowance(w.guild, "default", 0, 100, "daily", actor_id=None)
        await w.set_guild(mod_channel_id=mod_channel(w))
        await admin_ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        job = await held(w, "a castle")  # holds the 78 Buzz of the day's 100
        clock.advance(days=1)  # the next day's refill tops the bucket up past the hold
        await w.services.db.write(ledger.refresh_in, w.guild, w.member)
        await press(w, await item_message(w, job), "Reject", w.moderator)
        await w.take(10)

        history = await ask(w, w.member, "buzz history")
        [expired] = [line for line in history.splitlines() if "allowance of an" in line]
        assert job.id in expired and "-78" in expired
        assert "taken by an admin" not in expired
        [take] = [line for line in history.splitlines() if "-10" in line]
        assert "taken by an admin" in take


async def test_a_charge_above_what_the_member_had_shows_what_they_paid(tmp_path):
    """The orchestrator charged 95 for a job held at 78, and the member had only 80: they pay
    80 and the server covers 15. Their status and result say 80 charged, not 95 beside a
    balance of 0."""
    async with world(tmp_path) as w:
        await w.grant(80)
        w.sim.script(Outcome(charge=95), prompt="a dear kite")
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a dear kite", "quality": "medium"},
        )
        job, _ = await finish(w, h)
        assert job.charged == 95 and await w.available() == 0
        status = await w.wait_status(job, "posted")
        buzz = field_value(status, "Buzz")
        assert buzz.startswith("80 Buzz charged"), buzz
        assert "server covered 15" in buzz and "your balance: 0" in buzz
        result = w.results_of(job.id)[0]
        assert field_value(result, "Buzz charged").startswith("80"), text_of(result)


async def test_an_allowance_set_to_zero_is_shown_as_set_not_missing(tmp_path):
    """An admin gave bob an allowance of 0 (a member override over the server's default):
    his balance says so, not "no allowance is set for you"."""
    async with world(tmp_path) as w:
        await admin_ask(w, w.admin, "quota default", {"amount": 200, "period": "weekly"})
        await admin_ask(
            w, w.admin, "quota member", {"member": w.other, "amount": 0, "period": "weekly"}
        )
        text = await ask(w, w.other, "buzz balance")
        assert "No allowance is set" not in text, text
        assert "Allowance: 0 (member override)" in text, text
        assert "Allowance: 200 weekly" in await ask(w, w.member, "buzz balance")


async def test_a_one_off_allowance_reads_once_not_none(tmp_path):
    """An allowance with the period 'none' is given once: /quota show says '50 once'; the
    member's own balance said 'Allowance: 50 none' and 'Spent this period' (there is none)."""
    async with world(tmp_path) as w:
        await admin_ask(
            w, w.admin, "quota member", {"member": w.member, "amount": 500, "period": "none"}
        )
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a kite", "quality": "medium"},
        )
        await finish(w, h)  # 78 Buzz
        text = await ask(w, w.member, "buzz balance")
        assert "Allowance: 500 once (member override)" in text, text
        assert "Spent so far: 78" in text and "this period" not in text, text
        assert "Next refill" not in text, text


async def test_an_allowance_from_a_role_names_the_role_not_its_number(tmp_path):
    """The member read 'Allowance: 1,500 weekly (role 1576…)': a number they cannot look up.
    The role is mentioned (Discord shows its name; a private answer pings nobody)."""
    async with world(tmp_path) as w:
        patrons = w.fake.add_role(w.guild, "patrons")
        carol = w.fake.add_member(w.guild, "carol", roles=[patrons])
        await admin_ask(
            w, w.admin, "quota role", {"role": patrons, "amount": 1500, "period": "weekly"}
        )
        text = await ask(w, carol, "buzz balance")
        assert f"Allowance: 1,500 weekly (role <@&{patrons}>)" in text, text
        shown = await admin_ask(w, w.admin, "quota show", {"member": carol})
        assert f"Allowance: 1,500 weekly — from role <@&{patrons}>" in shown, shown
        options = {"prompt": "a kite", "quality": "medium"}
        await finish(
            w, await w.fake.slash(w.guild, w.channel, carol, "create gpt-image-2", options)
        )
        history = await ask(w, carol, "buzz history")  # the refill made at that request
        assert f"weekly allowance (role <@&{patrons}>)" in history, history
        assert f"role {patrons}" not in history


async def test_cancel_job_with_an_unknown_id_says_what_to_give(tmp_path):
    async with world(tmp_path) as w:
        text = await ask(w, w.member, "cancel", job="not-a-job")
        assert "**job**" in text and "`not-a-job`" in text
        assert "running jobs" in text and "/jobs" in text, text
        assert await w.jobs() == []
