"""REST routes (``/api/v10/...``), the fake CDN, auth, and the call log.

Every request is recorded in ``fake.calls``; unknown routes answer 404 JSON and are flagged
(``CallRecord.unknown_route``) so missing coverage shows up in tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from . import errors as E
from .appcommands import normalise_command, validate_command, validate_commands
from .errors import ApiError
from .gateway import GUILD_MEMBERS
from .messages import UploadedFile, apply_edit, build_message, read_body
from .state import (
    ATTACH_FILES,
    DM,
    EMBED_LINKS,
    MANAGE_CHANNELS,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    StoredMessage,
)
from .validation import check_flags, validate_message

if TYPE_CHECKING:
    from .interactions import InteractionRecord
    from .server import FakeDiscord

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CREATE_MESSAGE_FLAGS = (1 << 2) | (1 << 12) | (1 << 13) | (1 << 15)


@dataclasses.dataclass
class CallRecord:
    """One HTTP request the bot made to the fake."""

    method: str
    path: str
    query: dict[str, str]
    time: float
    json: Any = None
    files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: int | None = None
    response: Any = None
    unknown_route: bool = False
    interaction_id: int | None = None

    @property
    def error_code(self) -> int | None:
        if isinstance(self.response, dict) and self.status is not None and self.status >= 400:
            return self.response.get("code")
        return None

    @property
    def error_message(self) -> str | None:
        if isinstance(self.response, dict) and self.status is not None and self.status >= 400:
            return self.response.get("message")
        return None

    def __repr__(self) -> str:
        extra = f" code={self.error_code}" if self.error_code is not None else ""
        return f"<CallRecord {self.method} {self.path} -> {self.status}{extra}>"


RECORD = web.RequestKey("record", CallRecord)
ARRIVED = web.RequestKey("arrived", float)
INTERACTION = web.RequestKey("interaction", object)


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with ``Content-Type: application/json`` exactly (discord.py 2.7 compares it
    verbatim; aiohttp's ``web.json_response`` would add ``; charset=utf-8``)."""
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )


def slowmode_limited(retry_after: float) -> web.Response:
    """Discord's 429 for a post under a channel's slowmode (20016), as its edge sends it."""
    body = {
        "message": "This action cannot be performed due to slowmode rate limit.",
        "code": 20016,
        "retry_after": round(retry_after, 3),
        "global": False,
    }
    headers = {"Content-Type": "application/json", "Via": "1.1 google"}
    return web.Response(status=429, body=json.dumps(body).encode(), headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)


class RestApi:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    # ---- wiring --------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        p = r"/api/v{version:\d+}"
        r = app.router
        add = r.add_route
        add("GET", p + "/users/@me", self.get_me)
        add("POST", p + "/users/@me/channels", self.create_dm)
        add("GET", p + "/users/{user_id:\\d+}", self.get_user)
        add("GET", p + "/gateway", self.get_gateway)
        add("GET", p + "/gateway/bot", self.get_gateway_bot)
        add("GET", p + "/oauth2/applications/@me", self.get_application)
        add("GET", p + "/applications/@me", self.get_application)
        cmds = p + "/applications/{app_id:\\d+}"
        for scope in (cmds + "/commands", cmds + "/guilds/{guild_id:\\d+}/commands"):
            add("GET", scope, self.list_commands)
            add("PUT", scope, self.overwrite_commands)
            add("POST", scope, self.upsert_command)
            add("GET", scope + "/permissions", self.command_permissions)
            add("GET", scope + "/{command_id:\\d+}", self.get_command)
            add("PATCH", scope + "/{command_id:\\d+}", self.edit_command)
            add("DELETE", scope + "/{command_id:\\d+}", self.delete_command)
        add("POST", p + "/interactions/{interaction_id:\\d+}/{token}/callback", self.callback)
        hook = p + "/webhooks/{app_id:\\d+}/{token}"
        add("POST", hook, self.execute_webhook)
        add("GET", hook + "/messages/{message_id}", self.get_webhook_message)
        add("PATCH", hook + "/messages/{message_id}", self.edit_webhook_message)
        add("DELETE", hook + "/messages/{message_id}", self.delete_webhook_message)
        ch = p + "/channels/{channel_id:\\d+}"
        add("GET", ch, self.get_channel)
        add("GET", ch + "/messages", self.history)
        add("POST", ch + "/messages", self.create_message)
        add("GET", ch + "/messages/{message_id:\\d+}", self.get_message)
        add("PATCH", ch + "/messages/{message_id:\\d+}", self.edit_message)
        add("DELETE", ch + "/messages/{message_id:\\d+}", self.delete_message)
        add("POST", ch + "/typing", self.typing)
        react = ch + "/messages/{message_id:\\d+}/reactions/{emoji}/@me"
        add("PUT", react, self.add_reaction)
        add("DELETE", react, self.remove_reaction)
        g = p + "/guilds/{guild_id:\\d+}"
        add("GET", g, self.get_guild)
        add("GET", g + "/channels", self.guild_channels)
        add("GET", g + "/roles", self.guild_roles)
        add("GET", g + "/members", self.list_members)
        add("GET", g + "/members/{user_id:\\d+}", self.get_member)
        for prefix in ("attachments", "ephemeral-attachments"):
            add("GET", f"/{prefix}/{{channel_id}}/{{attachment_id:\\d+}}/{{filename}}", self.cdn)
        add("GET", "/", self.fake.gateway.handle)
        add("GET", "/gateway-ws", self.fake.gateway.handle)
        add("*", "/{tail:.*}", self.unknown)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        fake = self.fake
        record = CallRecord(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            time=time.time(),
        )
        request[RECORD] = record
        request[ARRIVED] = asyncio.get_running_loop().time()
        fake.calls.append(record)
        await fake.pass_gates(request.method, request.path, answered=False)
        try:
            if (
                self._needs_auth(request.path)
                and request.headers.get("Authorization") != f"Bot {fake.bot_token}"
            ):
                raise E.unauthorized()
            response = await handler(request)
        except ApiError as exc:
            response = json_response(exc.body(), exc.status)
            record.response = exc.body()
        except Exception as exc:
            # A bug in the fake, not in the bot. Answer 400 rather than 5xx: discord.py retries
            # 5xx with back-off, which would only slow the failing test down.
            log.exception("fake discord: handler crashed on %s %s", request.method, request.path)
            fake.crashes.append(f"{request.method} {request.path}: {exc!r}")
            body = {"message": f"fake discord handler crashed: {exc!r}", "code": -1}
            response = json_response(body, 400)
            record.response = body
        else:
            if (
                isinstance(response, web.Response)
                and response.body is not None
                and (response.content_type == "application/json")
            ):
                try:
                    record.response = json.loads(response.body)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    record.response = None
        record.status = response.status
        response.headers.update(fake.bucket_headers(request.method, request.path))
        await fake.pass_gates(request.method, request.path, answered=True)
        interaction = cast("InteractionRecord | None", request.get(INTERACTION))
        if interaction is not None:
            record.interaction_id = interaction.id
            if response.status >= 400:
                interaction.rejections.append(record)
        fake.notify()
        return response

    @staticmethod
    def _needs_auth(path: str) -> bool:
        if not path.startswith("/api/"):
            return False
        parts = path.split("/")
        # /api/v10/<resource>/...
        return len(parts) < 4 or parts[3] not in ("webhooks", "interactions")

    # ---- helpers -------------------------------------------------------------------------

    def _channel(self, request: web.Request) -> Channel:
        channel = self.fake.world.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise E.unknown_channel()
        if channel.type == DM:
            return channel
        if not self._bot_perms(channel) & VIEW_CHANNEL:
            raise E.missing_access()
        return channel

    def _bot_perms(self, channel: Channel) -> int:
        guild_id = channel.guild_id
        members = self.fake.world.guild(guild_id).members if guild_id is not None else None
        if members is not None and self.fake.bot_user_id not in members:
            return 0  # kicked: no access to anything in that guild
        return self.fake.world.channel_permissions(channel, self.fake.bot_user_id)

    def _post_in_thread(self, channel: Channel) -> None:
        """A post in an archived thread unarchives it, unless it is locked and the bot may
        not manage threads there (50083)."""
        if not channel.archived:
            return
        if channel.locked and not self._bot_perms(channel) & MANAGE_THREADS:
            raise E.thread_archived()
        channel.archived = False
        self.fake.update_thread(channel)

    @staticmethod
    def _slowmode_wait(channel: Channel, perms: int) -> float:
        """Seconds before the bot may post here again under the channel's slowmode."""
        if not channel.rate_limit_per_user or perms & (MANAGE_MESSAGES | MANAGE_CHANNELS):
            return 0.0
        if channel.bot_posted_at is None:
            return 0.0
        return channel.bot_posted_at + channel.rate_limit_per_user - time.monotonic()

    def _message(self, channel: Channel, request: web.Request) -> StoredMessage:
        message = self.fake.world.messages.get(int(request.match_info["message_id"]))
        if (
            message is None
            or message.deleted
            or message.ephemeral
            or message.channel_id != channel.id
        ):
            raise E.unknown_message()
        return message

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], list[UploadedFile]]:
        return await read_body(request, upload_limit=self.fake.upload_limit, record=request[RECORD])

    async def _json(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError as exc:
            raise E.invalid_json() from exc
        request[RECORD].json = data
        return data

    # ---- users / gateway / application ---------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        user = self.fake.bot_user.payload()
        user.update({"verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"})
        return json_response(user)

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.fake.world.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise E.unknown_user()
        return json_response(user.payload())

    async def create_dm(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        try:
            user_id = int(body["recipient_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise E.form_error(
                ["recipient_id"], "BASE_TYPE_REQUIRED", "This field is required"
            ) from exc
        if user_id not in self.fake.world.users:
            raise E.unknown_user()
        channel = self.fake.world.dm_channel_for(user_id)
        return json_response(channel.payload(self.fake.world))

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.fake.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.fake.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000 - self.fake.gateway.identifies,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_application(self, request: web.Request) -> web.Response:
        fake = self.fake
        return json_response(
            {
                "id": str(fake.application_id),
                "name": fake.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": fake.application_flags,
                "owner": fake.owner_user.payload(),
                "team": None,
                "bot": fake.bot_user.payload(),
                "hook": True,
                "is_monetized": False,
                "integration_types_config": {"0": {}},
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "approximate_guild_count": len(fake.world.guilds),
            }
        )

    # ---- application commands -----------------------------------------------------------

    def _scope(self, request: web.Request) -> int | None:
        if int(request.match_info["app_id"]) != self.fake.application_id:
            raise ApiError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return None
        if int(guild_id) not in self.fake.world.guilds:
            raise E.missing_access()
        return int(guild_id)

    async def list_commands(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        return json_response(self.fake.commands.get(scope, []))

    async def overwrite_commands(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        body = await self._json(request)
        if not isinstance(body, list):
            raise E.form_error(
                ["_"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
            )
        validate_commands(body, guild=scope is not None)
        existing = {
            (c["name"], int(c["type"])): int(c["id"]) for c in self.fake.commands.get(scope, [])
        }
        stored = []
        for raw in body:
            key = (raw["name"], int(raw.get("type") or 1))
            stored.append(
                normalise_command(self.fake, raw, guild_id=scope, command_id=existing.get(key))
            )
        self.fake.commands[scope] = stored
        return json_response(stored)

    async def upsert_command(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        raw = await self._json(request)
        if not isinstance(raw, dict):
            raise E.form_error(["_"], "DICT_TYPE_CONVERT", "Only dictionaries may be used")
        validate_command(raw)
        commands = self.fake.commands.setdefault(scope, [])
        ctype = int(raw.get("type") or 1)
        for i, cmd in enumerate(commands):
            if cmd["name"] == raw["name"] and int(cmd["type"]) == ctype:
                commands[i] = normalise_command(
                    self.fake, raw, guild_id=scope, command_id=int(cmd["id"])
                )
                return json_response(commands[i])
        validate_commands([*commands, raw], guild=scope is not None)
        cmd = normalise_command(self.fake, raw, guild_id=scope, command_id=None)
        commands.append(cmd)
        return json_response(cmd, 201)

    def _find_command(self, request: web.Request) -> tuple[int | None, dict[str, Any]]:
        scope = self._scope(request)
        command_id = request.match_info["command_id"]
        for cmd in self.fake.commands.get(scope, []):
            if cmd["id"] == command_id:
                return scope, cmd
        raise E.unknown_command()

    async def get_command(self, request: web.Request) -> web.Response:
        return json_response(self._find_command(request)[1])

    async def edit_command(self, request: web.Request) -> web.Response:
        scope, cmd = self._find_command(request)
        patch = await self._json(request) or {}
        merged = {**cmd, **patch}
        validate_command(merged)
        updated = normalise_command(self.fake, merged, guild_id=scope, command_id=int(cmd["id"]))
        commands = self.fake.commands[scope]
        commands[commands.index(cmd)] = updated
        return json_response(updated)

    async def delete_command(self, request: web.Request) -> web.Response:
        scope, cmd = self._find_command(request)
        self.fake.commands[scope].remove(cmd)
        return no_content()

    async def command_permissions(self, request: web.Request) -> web.Response:
        self._scope(request)
        return json_response([])

    # ---- interactions --------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        ledger = self.fake.interactions
        record = ledger.by_id.get(int(request.match_info["interaction_id"]))
        if record is None or record.token != request.match_info["token"]:
            raise E.unknown_interaction()
        request[INTERACTION] = record
        body, files = await self._body(request)
        result = ledger.callback(record, body, files, arrived=request[ARRIVED])
        if request.query.get("with_response", "").lower() in ("1", "true"):
            return json_response(result)
        return no_content()

    def _hook(self, request: web.Request) -> InteractionRecord:
        ledger = self.fake.interactions
        token = request.match_info["token"]
        request[INTERACTION] = ledger.by_token.get(token)
        return ledger.for_webhook(int(request.match_info["app_id"]), token)

    async def execute_webhook(self, request: web.Request) -> web.Response:
        record = self._hook(request)
        body, files = await self._body(request)
        message = self.fake.interactions.followup(record, body, files)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(message.payload(record.user_id))
        return no_content()

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._hook(request)
        message = self.fake.interactions.message_of(record, request.match_info["message_id"])
        return json_response(message.payload(record.user_id))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        record = self._hook(request)
        message = self.fake.interactions.message_of(record, request.match_info["message_id"])
        body, files = await self._body(request)
        if self.fake.world.channels[message.channel_id].archived:
            raise E.thread_archived()
        self.fake.interactions.edit(record, message, body, files)
        return json_response(message.payload(record.user_id))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._hook(request)
        message = self.fake.interactions.message_of(record, request.match_info["message_id"])
        self.fake.interactions.delete(record, message)
        return no_content()

    # ---- channels & messages -------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        return json_response(channel.payload(self.fake.world))

    async def history(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel.type != DM and not self._bot_perms(channel) & READ_MESSAGE_HISTORY:
            return json_response([])
        try:
            limit = int(request.query.get("limit", 50))
        except ValueError as exc:
            raise E.form_error(["limit"], "NUMBER_TYPE_COERCE", "Value is not int.") from exc
        if not 1 <= limit <= 100:
            raise E.form_error(["limit"], "NUMBER_TYPE_MAX", "int value should be <= 100.")
        messages = self.fake.world.visible_history(channel.id)  # oldest first
        before = request.query.get("before")
        after = request.query.get("after")
        around = request.query.get("around")
        if before is not None:
            picked = [m for m in messages if m.id < int(before)][-limit:]
        elif after is not None:
            picked = [m for m in messages if m.id > int(after)][:limit]
        elif around is not None:
            pivot = int(around)
            older = [m for m in messages if m.id < pivot][-(limit // 2) :] if limit > 1 else []
            newer = [m for m in messages if m.id >= pivot][: limit - len(older)]
            picked = older + newer
        else:
            picked = messages[-limit:]
        payloads = [self.fake.rest_message_payload(m) for m in reversed(picked)]
        return json_response(payloads)

    async def create_message(self, request: web.Request) -> web.Response:
        fake = self.fake
        channel = self._channel(request)
        body, files = await self._body(request)
        if channel.type == DM:
            assert channel.recipient_id is not None
            if not fake.world.users[channel.recipient_id].accepts_dms:
                raise E.cannot_dm_user()
        else:
            perms = self._bot_perms(channel)
            if not perms & SEND_MESSAGES:
                raise E.missing_permissions()
            if files and not perms & ATTACH_FILES:
                raise E.missing_permissions()
            if body.get("embeds") and not perms & EMBED_LINKS:
                # Refused when the embed is all there is; else dropped without a word.
                if not (body.get("content") or files):
                    raise E.missing_permissions()
                body = {k: v for k, v in body.items() if k != "embeds"}
            self._post_in_thread(channel)
            wait = self._slowmode_wait(channel, perms)
            if wait > 0:
                return slowmode_limited(wait)
        check_flags(body, CREATE_MESSAGE_FLAGS)
        validate_message(body, file_count=len(files))
        message = build_message(
            fake, channel=channel, author=fake.bot_user, payload=body, files=files
        )
        fake.world.store_message(message)
        channel.bot_posted_at = time.monotonic()
        fake.schedule_message_event("MESSAGE_CREATE", message)
        return json_response(fake.rest_message_payload(message))

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel.type != DM and not self._bot_perms(channel) & READ_MESSAGE_HISTORY:
            raise E.missing_access()
        return json_response(self.fake.rest_message_payload(self._message(channel, request)))

    async def edit_message(self, request: web.Request) -> web.Response:
        fake = self.fake
        channel = self._channel(request)
        message = self._message(channel, request)
        body, files = await self._body(request)
        if channel.archived:  # read-only until someone posts in it
            raise E.thread_archived()
        if message.author_id != fake.bot_user_id:
            only_flags = set(body) <= {"flags"}
            if not only_flags or files:
                raise E.cannot_edit_others()
            if not self._bot_perms(channel) & MANAGE_MESSAGES:
                raise E.missing_permissions()
        if files and channel.type != DM and not self._bot_perms(channel) & ATTACH_FILES:
            raise E.missing_permissions()
        check_flags(body, CREATE_MESSAGE_FLAGS)
        validate_message(body, file_count=len(files), creating=False)
        apply_edit(fake, message, body, files)
        fake.schedule_message_event("MESSAGE_UPDATE", message)
        return json_response(fake.rest_message_payload(message))

    async def delete_message(self, request: web.Request) -> web.Response:
        fake = self.fake
        channel = self._channel(request)
        message = self._message(channel, request)
        if message.author_id != fake.bot_user_id and (
            channel.type == DM or not self._bot_perms(channel) & MANAGE_MESSAGES
        ):
            raise E.missing_permissions()
        message.deleted = True
        fake.schedule_message_event("MESSAGE_DELETE", message)
        return no_content()

    async def typing(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel.type != DM and not self._bot_perms(channel) & SEND_MESSAGES:
            raise E.missing_permissions()
        return no_content()

    async def add_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self._message(channel, request)
        emoji = request.match_info["emoji"]
        users = message.reactions.setdefault(emoji, [])
        if self.fake.bot_user_id not in users:
            users.append(self.fake.bot_user_id)
        return no_content()

    async def remove_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self._message(channel, request)
        users = message.reactions.get(request.match_info["emoji"], [])
        if self.fake.bot_user_id in users:
            users.remove(self.fake.bot_user_id)
        return no_content()

    # ---- guilds --------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> Any:
        guild = self.fake.world.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise E.unknown_guild()
        if self.fake.bot_user_id not in guild.members:
            raise E.missing_access()
        return guild

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        data = guild.partial_payload()
        if request.query.get("with_counts", "").lower() in ("1", "true"):
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return json_response(data)

    async def guild_channels(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        world = self.fake.world
        return json_response([c.payload(world) for c in guild.channels.values()])

    async def guild_roles(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([r.payload() for r in guild.roles.values()])

    async def list_members(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        if not self.fake.enabled_privileged_intents & GUILD_MEMBERS:
            raise E.missing_access()
        limit = int(request.query.get("limit", 1))
        after = int(request.query.get("after", 0))
        ids = sorted(uid for uid in guild.members if uid > after)[:limit]
        return json_response([self.fake.world.member_payload(guild, uid) for uid in ids])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        user_id = int(request.match_info["user_id"])
        if user_id not in guild.members:
            raise E.unknown_member()
        return json_response(self.fake.world.member_payload(guild, user_id))

    # ---- CDN & fallbacks -----------------------------------------------------------------

    async def cdn(self, request: web.Request) -> web.Response:
        blob = self.fake.world.blobs.get(int(request.match_info["attachment_id"]))
        if blob is None or blob.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(
            body=blob.data,
            headers={"Content-Type": blob.content_type or "application/octet-stream"},
        )

    async def unknown(self, request: web.Request) -> web.Response:
        request[RECORD].unknown_route = True
        log.warning("fake discord: unknown route %s %s", request.method, request.path)
        raise E.not_found()
