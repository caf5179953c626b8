"""``FakeDiscord``: REST API + gateway + CDN on one loopback aiohttp server, plus world building."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import secrets
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from aiohttp import web

from .driver import DriverMixin
from .gateway import (
    DIRECT_MESSAGES,
    GUILD_MEMBERS,
    GUILD_MESSAGES,
    GUILD_PRESENCES,
    GUILDS,
    MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    Gateway,
)
from .interactions import InteractionLedger
from .rest import CallRecord, RestApi
from .snowflakes import SnowflakeFactory
from .state import (
    ATTACH_FILES,
    DM,
    SEND_MESSAGES,
    Blob,
    Channel,
    Guild,
    Overwrite,
    StoredMessage,
    User,
    World,
)

# Application flags (privileged intents switched on in the developer portal, "limited" variant
# as for an unverified bot in < 100 servers).
APP_FLAG_GATEWAY_PRESENCE_LIMITED = 1 << 13
APP_FLAG_GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15
APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
APP_FLAG_APPLICATION_COMMAND_BADGE = 1 << 23

__all__ = ["CallRecord", "FakeDiscord"]


class FakeDiscord(DriverMixin):
    """A loopback Discord for the real discord.py client.

    ``upload_limit`` (bytes per file) and ``ack_deadline`` (seconds for the initial
    interaction response) can be changed at any time.
    """

    def __init__(
        self,
        *,
        bot_name: str = "FakeBot",
        upload_limit: int = 10 * 1024 * 1024,
        ack_deadline: float = 3.0,
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self.snowflakes = SnowflakeFactory()
        self.world = World(self.snowflakes)
        self.bot_user: User = self.world.new_user(bot_name, bot=True)
        self.bot_user_id: int = self.bot_user.id
        self.application_id: int = self.bot_user.id  # modern apps: application id == bot id
        self.owner_user: User = self.world.new_user("app-owner")
        token_id = base64.b64encode(str(self.bot_user_id).encode()).decode().rstrip("=")
        self.bot_token: str = f"{token_id}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(27)}"
        self.upload_limit = upload_limit
        self.ack_deadline = ack_deadline
        self.heartbeat_interval_ms = heartbeat_interval_ms
        #: Privileged intents "switched on in the developer portal"; asking for others at
        #: IDENTIFY closes the gateway with 4014 like Discord does.
        self.enabled_privileged_intents: int = PRIVILEGED_INTENTS
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.calls: list[CallRecord] = []
        #: Crashes inside the fake's own handlers (should stay empty).
        self.crashes: list[str] = []
        #: Requests held back until their event is set (hold_requests): a slow Discord.
        #: The flag: held after they were carried out (only the answer is late).
        # (method, path, gate, answer_only, how many more requests it holds: None for all)
        self.gates: list[tuple[str, re.Pattern[str], asyncio.Event, bool, list[int] | None]] = []
        #: Routes answered with Discord's rate-limit headers (method, path, requests per
        #: window): discord.py then sends that many at once, as it does against Discord.
        self.buckets: list[tuple[str, re.Pattern[str], int]] = []
        self.interactions = InteractionLedger(self)
        self.gateway = Gateway(self)
        self.rest = RestApi(self)
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watched: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=1024**3)
        self.rest.install(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self.gateway.close_all()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be; also READY's resume URL."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def application_flags(self) -> int:
        flags = APP_FLAG_APPLICATION_COMMAND_BADGE
        if self.enabled_privileged_intents & GUILD_PRESENCES:
            flags |= APP_FLAG_GATEWAY_PRESENCE_LIMITED
        if self.enabled_privileged_intents & GUILD_MEMBERS:
            flags |= APP_FLAG_GATEWAY_GUILD_MEMBERS_LIMITED
        if self.enabled_privileged_intents & MESSAGE_CONTENT:
            flags |= APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED
        return flags

    def cdn_url(self, blob: Blob) -> str:
        prefix = "ephemeral-attachments" if blob.ephemeral else "attachments"
        return f"{self.base_url}/{prefix}/{blob.channel_id}/{blob.id}/{blob.filename}"

    # ---- change notification & background dispatch ----------------------------------------

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Make :meth:`wait_for` fail fast with this task's exception if it dies (bot tasks)."""
        self._watched.add(task)
        task.add_done_callback(lambda _: self.notify())

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self._watched.discard(task)

    def _raise_if_bot_died(self) -> None:
        for task in self._watched:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the bot's start task died") from task.exception()

    def notify(self) -> None:
        """Wake everything waiting in :meth:`wait_for`."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def schedule_message_event(self, event: str, message: StoredMessage) -> None:
        """MESSAGE_CREATE / UPDATE / DELETE to the bot (never for ephemeral messages)."""
        self.notify()
        if message.ephemeral or self.gateway.current is None:
            return
        channel = self.world.channel(message.channel_id)
        intent = DIRECT_MESSAGES if channel.type == DM else GUILD_MESSAGES
        if event == "MESSAGE_DELETE":
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(channel.id)}
            if channel.guild_id is not None:
                data["guild_id"] = str(channel.guild_id)
        else:
            data = self.gateway_message_payload(message, intents=self.gateway.current.intents)
        self._spawn(self.gateway.dispatch(event, data, intent=intent))

    def _strip_content(
        self, message: StoredMessage, data: dict[str, Any], has_intent: bool
    ) -> None:
        """Without the Message Content intent, other users' messages arrive empty."""
        channel = self.world.channel(message.channel_id)
        if has_intent or channel.type == DM or message.author_id == self.bot_user_id:
            return
        if any(int(u["id"]) == self.bot_user_id for u in data.get("mentions", [])):
            return
        data.update({"content": "", "embeds": [], "attachments": [], "components": []})
        data.pop("poll", None)

    def gateway_message_payload(
        self, message: StoredMessage, *, intents: int | None = None
    ) -> dict[str, Any]:
        data = message.payload(self.bot_user_id)
        channel = self.world.channel(message.channel_id)
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
            guild = self.world.guild(channel.guild_id)
            if "webhook_id" not in data and message.author_id in guild.members:
                data["member"] = self.world.member_payload(
                    guild, message.author_id, with_user=False
                )
        if intents is not None:
            self._strip_content(message, data, bool(intents & MESSAGE_CONTENT))
        return data

    def rest_message_payload(self, message: StoredMessage) -> dict[str, Any]:
        data = message.payload(self.bot_user_id)
        self._strip_content(message, data, bool(self.enabled_privileged_intents & MESSAGE_CONTENT))
        return data

    def guild_create_for(self, guild: Guild, intents: int) -> dict[str, Any]:
        # Without GUILD_PRESENCES Discord only sends the bot's own member (and voice users).
        member_ids = list(guild.members) if intents & GUILD_PRESENCES else [self.bot_user_id]
        return self.world.guild_create_payload(guild, member_ids=member_ids)

    def _dispatch_soon(self, event: str, data: Any, *, intent: int = 0) -> None:
        if self.gateway.current is not None:
            self._spawn(self.gateway.dispatch(event, data, intent=intent))

    # ---- world building ------------------------------------------------------------------

    def hold_requests(
        self, method: str, path: str, *, answer_only: bool = False, times: int | None = None
    ) -> asyncio.Event:
        """Requests whose method is `method` and whose path matches the regex `path` are
        recorded on arrival, then carried out and answered only once the returned event is set.
        `answer_only`: carried out at once (a message is posted), only the answer is held.
        `times`: only the first that many such requests are held; later ones pass."""
        gate = asyncio.Event()
        left = None if times is None else [times]
        self.gates.append((method.upper(), re.compile(path), gate, answer_only, left))
        return gate

    def rate_limit_headers(self, method: str, path: str, limit: int = 5) -> None:
        """Answers to `method` requests whose path matches the regex `path` carry Discord's
        rate-limit headers: a bucket of `limit` requests per 5 seconds, never used up here."""
        self.buckets.append((method.upper(), re.compile(path), limit))

    def bucket_headers(self, method: str, path: str) -> dict[str, str]:
        for bucket_method, pattern, limit in self.buckets:
            if bucket_method == method and pattern.search(path):
                return {
                    "X-RateLimit-Bucket": f"fake{abs(hash(pattern.pattern)) % 10**8:08d}",
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": str(limit - 1),
                    "X-RateLimit-Reset-After": "5.000",
                    "X-RateLimit-Reset": f"{time.time() + 5:.3f}",
                }
        return {}

    async def pass_gates(self, method: str, path: str, *, answered: bool) -> None:
        for gated_method, pattern, gate, answer_only, left in self.gates:
            if answer_only == answered and gated_method == method and pattern.search(path):
                if left is not None:
                    if left[0] <= 0:
                        continue
                    left[0] -= 1
                await gate.wait()

    def add_guild(self, name: str, *, bot_permissions: int = 0) -> int:
        """A guild the bot is in (with @everyone, a managed bot role and a synthetic owner)."""
        world = self.world
        owner = world.new_user(f"{name}-owner")
        guild = world.new_guild(name, owner)
        world.new_member(guild, owner)
        bot_role = world.new_role(
            guild, self.bot_user.username, bot_permissions, 1, managed=True, bot_id=self.bot_user_id
        )
        world.new_member(guild, self.bot_user, [bot_role.id])
        if self.gateway.current is not None:
            self._dispatch_soon(
                "GUILD_CREATE",
                self.guild_create_for(guild, self.gateway.current.intents),
                intent=GUILDS,
            )
        self.notify()
        return guild.id

    def add_role(self, guild_id: int, name: str, permissions: int = 0, position: int = 1) -> int:
        guild = self.world.guild(guild_id)
        role = self.world.new_role(guild, name, permissions, position)
        self._dispatch_soon(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()}, intent=GUILDS
        )
        self.notify()
        return role.id

    def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        """An admin changes a role's permissions (@everyone's id is the guild's);
        GUILD_ROLE_UPDATE tells the bot."""
        role = self.world.guild(guild_id).roles[role_id]
        role.permissions = permissions
        data = {"guild_id": str(guild_id), "role": role.payload()}
        self._dispatch_soon("GUILD_ROLE_UPDATE", data, intent=GUILDS)
        self.notify()

    def set_member_roles(self, guild_id: int, user_id: int, roles: Sequence[int]) -> None:
        """An admin sets a member's roles; GUILD_MEMBER_UPDATE tells the bot (about itself
        whatever its intents, as Discord does; about others only with GUILD_MEMBERS)."""
        guild = self.world.guild(guild_id)
        guild.members[user_id].roles = [int(r) for r in roles]
        data = {**self.world.member_payload(guild, user_id), "guild_id": str(guild_id)}
        intent = 0 if user_id == self.bot_user_id else GUILD_MEMBERS
        self._dispatch_soon("GUILD_MEMBER_UPDATE", data, intent=intent)
        self.notify()

    def remove_role(self, guild_id: int, role_id: int) -> None:
        """A role deleted in Discord: its members lose it, GUILD_ROLE_DELETE tells the bot."""
        guild = self.world.guild(guild_id)
        del guild.roles[role_id]
        for member in guild.members.values():
            member.roles = [r for r in member.roles if r != role_id]
        data = {"guild_id": str(guild.id), "role_id": str(role_id)}
        self._dispatch_soon("GUILD_ROLE_DELETE", data, intent=GUILDS)
        self.notify()

    def add_channel(
        self,
        guild_id: int,
        name: str,
        bot_can_send: bool = True,
        bot_can_attach: bool = True,
        nsfw: bool = False,
    ) -> int:
        """A text channel; ``bot_can_*=False`` adds a member overwrite denying the bot;
        ``nsfw=True`` turns on Discord's age restriction."""
        guild = self.world.guild(guild_id)
        channel = self.world.new_text_channel(guild, name, nsfw=nsfw)
        deny = (0 if bot_can_send else SEND_MESSAGES) | (0 if bot_can_attach else ATTACH_FILES)
        if deny:
            channel.overwrites.append(Overwrite(id=self.bot_user_id, type=1, deny=deny))
        self._dispatch_soon("CHANNEL_CREATE", channel.payload(self.world), intent=GUILDS)
        self.notify()
        return channel.id

    def add_thread(self, parent_id: int, name: str, owner_id: int | None = None) -> int:
        """A public thread in a text channel (it has its parent's permissions and age
        restriction), started by ``owner_id`` (default: the bot)."""
        parent = self.world.channel(parent_id)
        thread = self.world.new_thread(parent, name, owner_id or self.bot_user_id)
        data = {**thread.payload(self.world), "newly_created": True}
        self._dispatch_soon("THREAD_CREATE", data, intent=GUILDS)
        self.notify()
        return thread.id

    def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """A moderator archives a thread (and perhaps locks it); THREAD_UPDATE tells the bot."""
        thread = self.world.channel(thread_id)
        assert thread.parent_id is not None, "only a thread is archived"
        thread.archived, thread.locked = True, locked
        self.update_thread(thread)

    def update_thread(self, thread: Channel) -> None:
        self._dispatch_soon("THREAD_UPDATE", thread.payload(self.world), intent=GUILDS)
        self.notify()

    def set_slowmode(self, channel_id: int, seconds: int) -> None:
        """An admin sets the channel's slowmode (and Discord tells the bot)."""
        channel = self.world.channel(channel_id)
        channel.rate_limit_per_user = seconds
        self._dispatch_soon("CHANNEL_UPDATE", channel.payload(self.world), intent=GUILDS)
        self.notify()

    def set_channel_nsfw(self, channel_id: int, nsfw: bool) -> None:
        """Turn Discord's age restriction on or off in a channel (and tell the bot)."""
        channel = self.world.channel(channel_id)
        assert channel.parent_id is None, "a thread follows its parent's age restriction"
        channel.nsfw = nsfw
        self._dispatch_soon("CHANNEL_UPDATE", channel.payload(self.world), intent=GUILDS)
        self.notify()

    def add_member(
        self,
        guild_id: int,
        name: str,
        roles: Sequence[int] = (),
        permissions: int | None = None,
        guild_owner: bool = False,
    ) -> int:
        """A new user in the guild. ``permissions`` are granted through a personal role."""
        world = self.world
        guild = world.guild(guild_id)
        user = world.new_user(name)
        role_ids = [int(r) for r in roles]
        for role_id in role_ids:
            if role_id not in guild.roles:
                raise ValueError(f"role {role_id} is not in guild {guild_id}")
        if permissions is not None:
            personal = world.new_role(guild, f"{name}-perms", permissions, 1)
            self._dispatch_soon(
                "GUILD_ROLE_CREATE",
                {"guild_id": str(guild.id), "role": personal.payload()},
                intent=GUILDS,
            )
            role_ids.append(personal.id)
        world.new_member(guild, user, role_ids)
        if guild_owner:
            guild.owner_id = user.id
        data = world.member_payload(guild, user.id)
        data["guild_id"] = str(guild.id)
        self._dispatch_soon("GUILD_MEMBER_ADD", data, intent=GUILD_MEMBERS)
        self.notify()
        return user.id

    def add_user(self, name: str) -> int:
        """A user who shares no guild with the bot (e.g. for DMs)."""
        return self.world.new_user(name).id

    def set_accepts_dms(self, user_id: int, accepts: bool) -> None:
        """``False`` makes the bot's DMs to this user fail with 50007."""
        self.world.user(user_id).accepts_dms = accepts

    def set_bot_channel_permissions(
        self, channel_id: int, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Replace the bot's member overwrite in a channel (and tell the bot)."""
        channel = self.world.channel(channel_id)
        channel.overwrites = [o for o in channel.overwrites if o.id != self.bot_user_id]
        if allow or deny:
            channel.overwrites.append(
                Overwrite(id=self.bot_user_id, type=1, allow=allow, deny=deny)
            )
        self._dispatch_soon("CHANNEL_UPDATE", channel.payload(self.world), intent=GUILDS)
        self.notify()

    def bot_guilds(self) -> list[Guild]:
        """The guilds the bot is a member of (a kicked bot is sent none of the others)."""
        return [g for g in self.world.guilds.values() if self.bot_user_id in g.members]

    def remove_bot(self, guild_id: int) -> None:
        """The bot is kicked (or banned): it is no longer a member, Discord answers 403 Missing
        Access for the guild's channels, and GUILD_DELETE (no `unavailable`) tells the bot."""
        guild = self.world.guild(guild_id)
        guild.members.pop(self.bot_user_id, None)
        self._dispatch_soon("GUILD_DELETE", {"id": str(guild.id)}, intent=GUILDS)
        self.notify()

    def add_bot_back(self, guild_id: int) -> None:
        """The bot invited again to a guild it was removed from (GUILD_CREATE)."""
        guild = self.world.guild(guild_id)
        roles = [r.id for r in guild.roles.values() if r.bot_id == self.bot_user_id]
        self.world.new_member(guild, self.bot_user, roles)
        if self.gateway.current is not None:
            data = self.guild_create_for(guild, self.gateway.current.intents)
            data.pop("unavailable")  # a join, not a guild coming back
            self._dispatch_soon("GUILD_CREATE", data, intent=GUILDS)
        self.notify()

    def set_guild_unavailable(self, guild_id: int, unavailable: bool) -> None:
        """An outage: GUILD_DELETE with `unavailable`, then GUILD_CREATE when it is back."""
        guild = self.world.guild(guild_id)
        if unavailable:
            data: dict[str, Any] = {"id": str(guild.id), "unavailable": True}
            self._dispatch_soon("GUILD_DELETE", data, intent=GUILDS)
        elif self.gateway.current is not None:
            intents = self.gateway.current.intents
            self._dispatch_soon(
                "GUILD_CREATE", self.guild_create_for(guild, intents), intent=GUILDS
            )
        self.notify()

    async def settle(self) -> None:
        """Wait until every queued gateway event has been sent."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
