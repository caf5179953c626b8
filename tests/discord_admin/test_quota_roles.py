"""/quota and roles in a living server: a role deleted in Discord keeps its rule in the
database until an admin removes it, @everyone and bots' roles take no rule, and a member's own
override can be removed again."""

from __future__ import annotations

import logging

import pytest

from tests.discord.harness import World, answer, world
from tests.discord_admin.helpers import allow_everyone, ask, request, snapshot, started_job


async def test_a_deleted_roles_rule_is_marked_and_an_admin_can_remove_it(tmp_path):
    async with world(tmp_path) as w:
        patrons = w.fake.add_role(w.guild, "patrons")
        carol = w.fake.add_member(w.guild, "carol", roles=[patrons])
        await ask(w, w.admin, "quota default", {"amount": 200, "period": "weekly"})
        await ask(w, w.admin, "quota role", {"role": patrons, "amount": 1500, "period": "monthly"})
        shown = await ask(w, w.admin, "quota show", {"member": carol})
        assert f"Allowance: 1,500 monthly — from role <@&{patrons}>" in shown

        w.fake.remove_role(w.guild, patrons)
        await w.fake.settle()
        # Nobody has the role any more: the rule applies to nobody, and the list says so.
        shown = await ask(w, w.admin, "quota show", {"member": carol})
        assert "Allowance: 200 weekly — from guild default" in shown
        rules = await ask(w, w.admin, "quota show")
        assert f"<@&{patrons}>: 1,500 Buzz monthly (deleted role: applies to nobody)" in rules

        # The role is no longer an option anywhere in Discord: the rule is offered by name.
        choices = await w.fake.autocomplete(
            w.guild, w.channel, w.admin, "quota clear", focused="rule"
        )
        offered = {c["value"]: c["name"] for c in choices}
        assert f"role:{patrons}" in offered, offered
        assert "deleted" in offered[f"role:{patrons}"]
        allow_everyone(w, "quota")  # shown to all: a member still is not told the rules
        assert not await w.fake.autocomplete(
            w.guild, w.channel, carol, "quota clear", focused="rule"
        )
        text = await ask(w, w.admin, "quota clear", {"rule": f"role:{patrons}"})
        assert text == f"Removed the rule of <@&{patrons}> (1,500 Buzz monthly)."
        rules = await ask(w, w.admin, "quota show")
        assert f"<@&{patrons}>" not in rules
        text = await ask(w, w.admin, "quota clear", {"rule": f"role:{patrons}"})
        assert text.startswith("**rule**: there is no such rule here")


@pytest.mark.parametrize(
    "rule", ["role:" + "9" * 30, "member:18446744073709551616", "member:²", "role:١٢"]
)
async def test_a_typed_rule_that_is_no_id_is_refused_naming_the_option(tmp_path, caplog, rule):
    """/quota clear takes the rule as text (the suggestions are only suggestions): an id too
    large for any snowflake, or digits that are not 0-9, is the same clear refusal as any other
    unknown rule, not "Something went wrong", and nothing changes."""
    async with world(tmp_path) as w:
        patrons = w.fake.add_role(w.guild, "patrons")
        await ask(w, w.admin, "quota role", {"role": patrons, "amount": 1500, "period": "weekly"})
        before = await snapshot(w)
        text = await ask(w, w.admin, "quota clear", {"rule": rule})
        assert text == "**rule**: pick one of the suggested rules; /quota show lists them."
        assert await snapshot(w) == before
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_members_override_can_be_removed_and_roles_count_again(tmp_path):
    async with world(tmp_path) as w:
        patrons = w.fake.add_role(w.guild, "patrons")
        carol = w.fake.add_member(w.guild, "carol", roles=[patrons])
        await ask(w, w.admin, "quota role", {"role": patrons, "amount": 1500, "period": "weekly"})
        await ask(w, w.admin, "quota member", {"member": carol, "amount": 10, "period": "none"})
        shown = await ask(w, w.admin, "quota show", {"member": carol})
        assert "Allowance: 10 once — from member override" in shown

        text = await ask(w, w.admin, "quota clear", {"rule": f"member:{carol}"})
        assert text == f"Removed the rule of <@{carol}> (10 Buzz once)."
        shown = await ask(w, w.admin, "quota show", {"member": carol})
        assert f"Allowance: 1,500 weekly — from role <@&{patrons}>" in shown
        assert "member override" not in await ask(w, w.admin, "quota show")


async def test_everyone_and_a_bots_role_take_no_allowance(tmp_path):
    async with world(tmp_path) as w:
        await ask(w, w.admin, "quota default", {"amount": 1000, "period": "weekly"})
        # Every member has @everyone: a rule for it would silently replace the default.
        text = await ask(
            w, w.admin, "quota role", {"role": w.guild, "amount": 100, "period": "weekly"}
        )
        assert text.startswith("**role**: every member has @everyone; use /quota default")
        bot_role = next(
            r.id for r in w.fake.world.guild(w.guild).roles.values() if r.bot_id is not None
        )
        text = await ask(
            w, w.admin, "quota role", {"role": bot_role, "amount": 100, "period": "daily"}
        )
        assert "belongs to a bot" in text
        shown = await ask(w, w.admin, "quota show", {"member": w.member})
        assert "Allowance: 1,000 weekly — from guild default" in shown
        rules = await ask(w, w.admin, "quota show")
        assert f"<@&{w.guild}>" not in rules and f"<@&{bot_role}>" not in rules


async def test_a_members_roles_count_when_the_bot_has_not_the_server_in_its_cache(tmp_path):
    async with world(tmp_path) as w:
        patrons = w.fake.add_role(w.guild, "patrons")
        carol = w.fake.add_member(w.guild, "carol", roles=[patrons])
        await ask(w, w.admin, "quota default", {"amount": 200, "period": "weekly"})
        await ask(w, w.admin, "quota role", {"role": patrons, "amount": 1500, "period": "weekly"})
        # The bot out of the server (kicked, its commands still installed; or a start before
        # Discord has described the server): the interaction still names carol's roles.
        w.fake.remove_bot(w.guild)
        await w.fake.settle()
        shown = await text_of_balance(w, carol)
        assert "**1,500 Buzz** available" in shown and f"(role <@&{patrons}>)" in shown

        # Admission refills under the role too: a refill under the default would use up
        # carol's weekly refill, and the role's 1,500 would not come before next Monday.
        await started_job(w, await request(w, "a teacup", carol))
        entries = await w.services.ledger.history(w.guild, carol, 10)
        assert [(e.kind, e.amount) for e in entries if e.kind == "refill"] == [("refill", 1500)]


async def text_of_balance(w: World, member: int) -> str:
    message = await answer(await w.fake.slash(w.guild, w.channel, member, "buzz balance"))
    return message["embeds"][0]["description"]
