"""Who may moderate and administer: a plain member is refused every /quota, /mod and /settings
subcommand and every review button, and nothing changes; the configured moderator and admin
roles work without the Discord permissions."""

from __future__ import annotations

from typing import Any

from tests.discord.harness import answer, is_ephemeral, text_of, world
from tests.discord_admin.helpers import (
    COST,
    allow_everyone,
    ask,
    blocked,
    click,
    held,
    item_message,
    mod_channel,
    press,
    snapshot,
)

ADMIN_ONLY = "Only admins (Manage Server or the admin role) can do that."
MOD_ONLY = "Only moderators (Manage Messages or the moderator role) can do that."


def subcommands(w, name: str) -> set[str]:
    [command] = [c for c in w.fake.commands[w.guild] if c["name"] == name]
    return {o["name"] for o in command["options"]}


async def test_a_plain_member_is_refused_everything_and_nothing_changes(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        logs = w.fake.add_channel(w.guild, "image-log")
        role = w.fake.add_role(w.guild, "artists")
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        await w.grant(300, w.other)
        await ask(w, w.admin, "quota default", {"amount": 100, "period": "weekly"})
        await ask(w, w.admin, "quota budget", {"amount": 5000, "period": "monthly"})
        await ask(w, w.moderator, "mod filter-add", {"pattern": "castle"})
        await ask(w, w.moderator, "mod ban", {"member": w.other, "reason": "spam"})
        blocked_item = await item_message(w, await blocked(w, "a blocked thing"))
        held_item = await item_message(w, await held(w, "a castle on a hill"))
        eve = w.fake.add_member(w.guild, "eve")
        # The server lets everyone see the commands (Server Settings → Integrations); the bot
        # itself must still refuse.
        for name in ("quota", "mod", "settings"):
            allow_everyone(w, name)

        m, o, ch = w.member, w.other, w.channel
        attempts: dict[str, dict[str, dict[str, Any]]] = {
            "quota": {
                "default": {"amount": 9999, "period": "daily"},
                "role": {"role": role, "amount": 9999, "period": "daily"},
                "member": {"member": eve, "amount": 9999, "period": "daily"},
                "grant": {"member": eve, "amount": 9999},
                "take": {"member": m, "amount": 10},
                "budget": {"amount": 0, "period": "none"},
                "show": {"member": m},
                "export": {},
                "clear": {"rule": "default"},
                "report": {"days": 7},
            },
            "mod": {
                "queue": {},
                "ban": {"member": m, "days": 3},
                "unban": {"member": o},
                "strikes": {"member": m},
                "filter-add": {"pattern": "sunset"},
                "filter-remove": {"pattern": "castle"},
                "filter-list": {},
            },
            "settings": {
                "show": {},
                "mod-channel": {"channel": ch},
                "log-channel": {"channel": logs},
                "default-model": {"model": "dall-e-3"},
                "model": {"model": "dall-e-3", "enabled": False},
                "channel": {"channel": ch, "allowed": False},
                "confirm-above": {"buzz": 1},
                "concurrency": {"per-member": 1, "per-guild": 1},
                "mod-role": {"role": role},
                "admin-role": {"role": role},
                "reroll-anyone": {"allowed": True},
                "strikes": {"count": 1, "days": 1},
                "upscale": {"enabled": False},
                "remove-background": {"enabled": False},
                "mature": {"level": "pg", "channel": ch, "release-channel": logs},
                "premoderation": {"enabled": True, "labels": "hate"},
            },
        }
        for group, tried in attempts.items():
            assert set(tried) == subcommands(w, group), group  # every subcommand is tried

        before = await snapshot(w, mods, w.channel, logs)
        for group, tried in attempts.items():
            expected = MOD_ONLY if group == "mod" else ADMIN_ONLY
            for sub, options in tried.items():
                text = await ask(w, eve, f"{group} {sub}", options)
                assert text == expected, (group, sub, text)
        for item, labels in (
            (held_item, ("Approve", "Reject", "Strike", "Ban")),
            (blocked_item, ("Refund", "Dismiss", "Strike", "Ban")),
        ):
            for label in labels:
                assert await press(w, item, label, eve) == MOD_ONLY, label
        # The member whose job it is may not judge it either.
        assert await press(w, blocked_item, "Refund", w.member) == MOD_ONLY
        await w.fake.settle()
        assert await snapshot(w, mods, w.channel, logs) == before


async def test_the_moderator_and_admin_roles_work_without_the_permissions(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        helpers = w.fake.add_role(w.guild, "helpers")
        bosses = w.fake.add_role(w.guild, "bosses")
        helper = w.fake.add_member(w.guild, "helper", roles=[helpers])
        boss = w.fake.add_member(w.guild, "boss", roles=[bosses])
        for name in ("quota", "mod", "settings"):
            allow_everyone(w, name)
        item = await item_message(w, await blocked(w, "needs a second look"))

        # Before the roles are configured, they are plain members.
        assert await press(w, item, "Refund", helper) == MOD_ONLY
        assert await ask(w, boss, "quota show") == ADMIN_ONLY
        await ask(w, w.admin, "settings mod-role", {"role": helpers})
        await ask(w, w.admin, "settings admin-role", {"role": bosses})

        text = await press(w, item, "Refund", helper)
        assert text == f"Review #1: refunded {COST} Buzz to <@{w.member}>."
        assert await w.available() == 1000
        text = await ask(w, helper, "mod filter-add", {"pattern": "swamp"})
        assert text.startswith("Added filter #1: `swamp`")
        # A moderator is not an admin.
        assert await ask(w, helper, "quota grant", {"member": helper, "amount": 5}) == ADMIN_ONLY
        assert await ask(w, w.moderator, "settings show") == ADMIN_ONLY

        text = await ask(w, boss, "quota grant", {"member": w.other, "amount": 250})
        assert text == f"Granted 250 Buzz to <@{w.other}>; their balance is now 250."
        assert await w.available(w.other) == 250
        text = await ask(w, boss, "settings confirm-above", {"buzz": 700})
        assert "Confirm requests above: 700 Buzz" in text
        # An admin is not a moderator.
        assert await ask(w, boss, "mod queue") == MOD_ONLY


async def test_the_ban_button_refuses_a_plain_member_before_any_modal(tmp_path):
    async with world(tmp_path) as w:
        mods = mod_channel(w)
        await w.set_guild(mod_channel_id=mods)
        await w.grant(1000)
        item = await item_message(w, await blocked(w, "no modal for you"))
        handle = await click(w, item, "Ban", w.other)
        message = await answer(handle)
        assert handle.modal is None and is_ephemeral(message)
        assert text_of(message) == MOD_ONLY
