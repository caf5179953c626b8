"""Shared setup for the moderator and admin end-to-end tests: the real bot against the fake
Discord, the simulator and SQLite (tests/discord/harness.py), plus what moderators and admins do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.services import build_services
from tests.discord.harness import (
    World,
    answer,
    buttons,
    is_ephemeral,
    started,
    text_of,
)
from tests.fakes import InteractionHandle
from tests.fakes.gateway import GUILD_MEMBERS, GUILDS

# What a member's request costs in these tests: gpt-image-2, medium, 1024x1024, one image.
COST = 78


class Clock:
    """The bot services' clock (bans, periods, strike windows): frozen until advanced."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def ask(
    w: World,
    user: int,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    guild: int | None = None,
    channel: int | None = None,
) -> str:
    """Run a command whose answer is private to the user; return what they read."""
    handle = await w.fake.slash(
        guild or w.guild, channel or w.channel, user, command, options=options or {}
    )
    message = await answer(handle)
    assert is_ephemeral(message), text_of(message)
    return text_of(message)


async def request(
    w: World,
    prompt: str,
    member: int | None = None,
    *,
    guild: int | None = None,
    channel: int | None = None,
    attachments: dict[str, Any] | None = None,
) -> InteractionHandle:
    """A member's request: gpt-image-2, medium quality, 1024x1024 (78 Buzz); an /edit when
    there are attachments."""
    command = "edit gpt-image-2" if attachments else "create gpt-image-2"
    options: dict[str, Any] = {"prompt": prompt, "quality": "medium", "size": "1024x1024"}
    return await w.fake.slash(
        guild or w.guild,
        channel or w.channel,
        member or w.member,
        command,
        options=options,
        attachments=attachments,
    )


async def started_job(w: World, handle: InteractionHandle):
    return await started(w, handle)


async def blocked(
    w: World,
    prompt: str,
    member: int | None = None,
    *,
    charged: bool = True,
    guild: int | None = None,
    channel: int | None = None,
    attachments: dict[str, Any] | None = None,
):
    """A request the orchestrator blocks (charging for it, or not); returns the ended job."""
    w.sim.script("block_charged" if charged else "block", prompt=prompt)
    handle = await request(w, prompt, member, guild=guild, channel=channel, attachments=attachments)
    job = await started_job(w, handle)
    job = await w.wait_job(job.id, "blocked")
    await w.wait_status(job, "blocked")
    return job


async def held(w: World, prompt: str, member: int | None = None):
    """A request the guild's prompt filter holds for review; returns the held job."""
    handle = await request(w, prompt, member)
    job = await started_job(w, handle)
    job = await w.wait_job(job.id, "held")
    await w.wait_status(job, "review")
    return job


async def outage(w: World, seconds: float) -> None:
    """The bot is down for a while (jobs go on upstream), then a new process starts and
    resumes them: World.restart_bot with a pause between stop and start."""
    await w._stop()
    await w.services.aclose()
    await asyncio.sleep(seconds)
    services = await build_services(
        w.settings, base_url=w.sim.base_url, token=w.sim.token, clock=w.services.clock
    )
    await w._start(services)


def mod_channel(w: World, name: str = "mod-queue", **kwargs: Any) -> int:
    return w.fake.add_channel(w.guild, name, **kwargs)


async def item_message(w: World, job, channel: int | None = None) -> dict[str, Any]:
    """The review item for a job in the moderation channel (its footer names the job)."""
    settings = await w.services.guilds.settings(job.guild_id)
    where = channel or settings.mod_channel_id
    assert where is not None

    def find() -> dict[str, Any] | None:
        for message in w.fake.channel_messages(where):
            if f"job {job.id}" in text_of(message):
                return message
        return None

    message = await w.fake.wait_for(find, timeout=10, what=f"the review item of {job.id}")
    # The board records the message after posting it; wait for that too, so that a restart
    # right after this does not land between the two.
    async with asyncio.timeout(10):
        while True:
            item = await w.services.moderation.item_for_job(job.id)
            if item is not None and item.message_id == int(message["id"]):
                return message
            await asyncio.sleep(0.01)


async def click(w: World, message: dict[str, Any], label: str, user: int) -> InteractionHandle:
    custom_id = buttons(w.fake.message(int(message["id"])))[label]
    return await w.fake.click(int(message["id"]), custom_id, user)


async def press(w: World, message: dict[str, Any], label: str, user: int) -> str:
    """Press a button whose answer is private to the presser; return what they read."""
    handle = await click(w, message, label, user)
    reply = await answer(handle)
    assert is_ephemeral(reply), text_of(reply)
    return text_of(reply)


def option(w: World, *path: str) -> dict[str, Any]:
    """A registered command's option as Discord holds it: option(w, "quota", "grant", "amount")."""
    [node] = [c for c in w.fake.commands[w.guild] if c["name"] == path[0]]
    for name in path[1:]:
        [node] = [o for o in node["options"] if o["name"] == name]
    return node


def allow_everyone(w: World, command: str, guild: int | None = None) -> None:
    """What a server admin does in Server Settings → Integrations: let everyone see a command
    that Discord hides by its default permissions. The bot's runtime check still decides."""
    found = False
    for scope in (guild or w.guild, None):
        for registered in w.fake.commands.get(scope, []):
            if registered["name"] == command:
                registered["default_member_permissions"] = None
                found = True
    assert found, command


def delete_channel(w: World, channel_id: int) -> None:
    """An admin deletes a channel (Discord tells the bot)."""
    world = w.fake.world
    channel = world.channels.pop(channel_id)
    world.guild(channel.guild_id).channels.pop(channel_id, None)
    w.fake._dispatch_soon("CHANNEL_DELETE", channel.payload(world), intent=GUILDS)
    w.fake.notify()


def join(w: World, guild: int, user: int, roles: list[int] | None = None) -> None:
    """An existing user joins another guild (the same Discord account in both)."""
    world = w.fake.world
    g = world.guild(guild)
    world.new_member(g, world.user(user), list(roles or []))
    data = world.member_payload(g, user)
    data["guild_id"] = str(guild)
    w.fake._dispatch_soon("GUILD_MEMBER_ADD", data, intent=GUILD_MEMBERS)
    w.fake.notify()


TABLES = (
    "guild_settings",
    "guild_models",
    "guild_channels",
    "allowances",
    "accounts",
    "ledger_entries",
    "holds",
    "jobs",
    "review_items",
    "strikes",
    "bans",
    "prompt_filters",
    "audit_events",
    "safety_settings",
    "channel_ratings",
    "guild_charges",
)


async def snapshot(w: World, *channels: int) -> dict[str, Any]:
    """Everything a refused action must leave alone: the database and the given channels."""
    state: dict[str, Any] = {}
    for table in TABLES:
        rows = await w.services.db.fetchall(f"SELECT * FROM {table} ORDER BY rowid")
        state[table] = [tuple(r) for r in rows]
    for channel in channels:
        state[f"channel {channel}"] = w.fake.channel_messages(channel)
    return state


async def ledger_kinds(w: World, member: int | None = None, guild: int | None = None) -> list:
    rows = await w.services.db.fetchall(
        "SELECT kind, amount FROM ledger_entries WHERE guild_id = ? AND member_id = ? ORDER BY id",
        (guild or w.guild, member or w.member),
    )
    return [(r[0], r[1]) for r in rows]


async def audit_actions(w: World, action: str) -> list:
    return await w.services.db.fetchall(
        "SELECT actor_id, target, details FROM audit_events WHERE action = ? ORDER BY id",
        (action,),
    )


def jobs_with_items(w: World, n: int, prompt: str = "castle") -> Callable[[Any], None]:
    """A transaction making `n` blocked jobs, each with its open review item (queue tests)."""
    from bot.store.jobs import JobStatus, NewJob

    def many(tx: Any) -> None:
        for k in range(n):
            job_id = f"j{k:017x}"
            w.services.jobs.insert_in(
                tx,
                NewJob(
                    id=job_id,
                    guild_id=w.guild,
                    channel_id=w.channel,
                    member_id=w.member,
                    model="gpt-image-2",
                    operation="createImage",
                    options={"prompt": prompt},
                    step={},
                    estimate=78,
                    status=JobStatus.BLOCKED,
                ),
            )
            w.services.moderation.create_item_in(tx, w.guild, job_id, "blocked", "filter")

    return many
