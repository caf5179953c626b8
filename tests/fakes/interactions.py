"""Interaction lifecycle and Discord's rules for it.

* The initial response (``POST /interactions/{id}/{token}/callback``) must arrive within
  ``fake.ack_deadline`` seconds (3 s on Discord) of the dispatch, else 404 / 10062; a second
  one gets 400 / 40060.
* The token works for 15 minutes from the interaction's creation (its snowflake time); after
  that followups and ``@original`` calls get 401 / 50027. Before any initial response they get
  404 / 10015.
* The first followup after a "thinking" defer (type 5) fills in the loading message instead of
  creating a new one (Discord documents it as acting like an ``@original`` edit).
* Ephemeral messages (flag 64) are stored for the interaction only, never in channel history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any

from .errors import (
    ApiError,
    InteractionRejected,
    already_acknowledged,
    invalid_webhook_token,
    unknown_channel,
    unknown_interaction,
    unknown_message,
    unknown_webhook,
)
from .messages import (
    CHAT_INPUT_COMMAND,
    CONTEXT_MENU_COMMAND,
    DEFAULT,
    UploadedFile,
    apply_edit,
    build_message,
)
from .snowflakes import utcnow
from .state import (
    FLAG_EPHEMERAL,
    FLAG_IS_COMPONENTS_V2,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    StoredMessage,
)
from .validation import check_flags, validate_autocomplete, validate_message, validate_modal

if TYPE_CHECKING:
    from .rest import CallRecord
    from .server import FakeDiscord

# Interaction types.
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
APPLICATION_COMMAND_AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Callback types.
PONG = 1
CHANNEL_MESSAGE_WITH_SOURCE = 4
DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
MODAL = 9

TOKEN_LIFETIME = dt.timedelta(minutes=15)
RESPONSE_FLAGS = (
    FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2
)


@dataclasses.dataclass
class InteractionRecord:
    id: int
    token: str
    type: int
    guild_id: int | None
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    created_at: dt.datetime
    dispatched_at: float = 0.0
    command_type: int | None = None
    command_name: str | None = None
    source_message_id: int | None = None
    parent: InteractionRecord | None = None
    response: dict[str, Any] | None = None
    response_at: float | None = None
    original_message_id: int | None = None
    loading: bool = False
    followup_ids: list[int] = dataclasses.field(default_factory=list)
    rejections: list[CallRecord] = dataclasses.field(default_factory=list)

    @property
    def from_component(self) -> bool:
        return self.source_message_id is not None


class InteractionLedger:
    """Server side of interactions: creation, callbacks, and interaction-token webhooks."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.by_id: dict[int, InteractionRecord] = {}
        self.by_token: dict[str, InteractionRecord] = {}

    def new(
        self,
        *,
        itype: int,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        data: dict[str, Any],
        created_at: dt.datetime | None = None,
        message: dict[str, Any] | None = None,
        source_message_id: int | None = None,
        command_type: int | None = None,
        command_name: str | None = None,
        parent: InteractionRecord | None = None,
    ) -> InteractionRecord:
        fake = self.fake
        world = fake.world
        moment = created_at or utcnow()
        interaction_id = fake.snowflakes.new(moment)
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        channel = world.channel(channel_id)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(fake.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(channel_id),
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": fake.upload_limit,
            "app_permissions": str(world.channel_permissions(channel, fake.bot_user_id)),
        }
        if guild_id is not None:
            guild = world.guild(guild_id)
            member = world.member_payload(guild, user_id)
            member["permissions"] = str(world.channel_permissions(channel, user_id))
            channel_data = channel.payload(world)
            channel_data["permissions"] = member["permissions"]
            payload.update(
                {
                    "guild_id": str(guild_id),
                    "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "member": member,
                    "channel": channel_data,
                    "authorizing_integration_owners": {"0": str(guild_id)},
                    "context": 0,
                }
            )
        else:
            channel_data = channel.payload(world)
            channel_data["permissions"] = str(world.channel_permissions(channel, user_id))
            payload.update(
                {
                    "user": world.user(user_id).payload(),
                    "channel": channel_data,
                    "authorizing_integration_owners": {"0": "0"},
                    "context": 1,
                }
            )
        if message is not None:
            payload["message"] = message
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=itype,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            payload=payload,
            created_at=moment,
            command_type=command_type,
            command_name=command_name,
            source_message_id=source_message_id,
            parent=parent,
        )
        self.by_id[record.id] = record
        self.by_token[record.token] = record
        return record

    # ---- helpers -------------------------------------------------------------------------

    def _metadata(self, record: InteractionRecord) -> dict[str, Any]:
        world = self.fake.world
        meta: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "user": world.user(record.user_id).payload(),
            "authorizing_integration_owners": record.payload["authorizing_integration_owners"],
        }
        if record.command_name is not None:
            meta["name"] = record.command_name
            meta["command_type"] = record.command_type
        if record.type == APPLICATION_COMMAND and record.command_type == 3:
            meta["target_message_id"] = record.payload["data"]["target_id"]
        if record.type == APPLICATION_COMMAND and record.command_type == 2:
            target = record.payload["data"]["target_id"]
            meta["target_user"] = world.user(int(target)).payload()
        if record.source_message_id is not None and record.type == MESSAGE_COMPONENT:
            meta["interacted_message_id"] = str(record.source_message_id)
        if record.type == MODAL_SUBMIT and record.parent is not None:
            meta["triggering_interaction_metadata"] = self._metadata(record.parent)
        if record.original_message_id is not None:
            meta["original_response_message_id"] = str(record.original_message_id)
        return meta

    def _message_type(self, record: InteractionRecord) -> int:
        if record.type == APPLICATION_COMMAND:
            return CHAT_INPUT_COMMAND if record.command_type == 1 else CONTEXT_MENU_COMMAND
        return DEFAULT

    def _new_message(
        self,
        record: InteractionRecord,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        message_type: int,
        extra_flags: int = 0,
    ) -> StoredMessage:
        fake = self.fake
        if record.channel_id not in fake.world.channels:
            raise unknown_channel()  # the interaction's channel was deleted since
        ephemeral = bool((int(payload.get("flags") or 0) | extra_flags) & FLAG_EPHEMERAL)
        message = build_message(
            fake,
            channel=fake.world.channel(record.channel_id),
            author=fake.bot_user,
            payload=payload,
            files=files,
            message_type=message_type,
            extra_flags=extra_flags,
            webhook=True,
            interaction_metadata=self._metadata(record),
            ephemeral_to=record.user_id if ephemeral else None,
            interaction_id=record.id,
        )
        fake.world.store_message(message)
        return message

    # ---- POST /interactions/{id}/{token}/callback ---------------------------------------

    def callback(
        self,
        record: InteractionRecord,
        body: dict[str, Any],
        files: list[UploadedFile],
        *,
        arrived: float,
    ) -> dict[str, Any]:
        """Apply an initial response; ``arrived`` is the loop time the request came in."""
        fake = self.fake
        if record.response is not None:
            raise already_acknowledged()
        elapsed = arrived - record.dispatched_at
        if elapsed > fake.ack_deadline:
            raise unknown_interaction()
        cb_type = body.get("type")
        data = body.get("data") or {}
        allowed = {
            APPLICATION_COMMAND: {4, 5, 9},
            MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
            APPLICATION_COMMAND_AUTOCOMPLETE: {8},
            MODAL_SUBMIT: {4, 5, 6, 7} if record.from_component else {4, 5},
        }[record.type]
        if cb_type not in allowed:
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": f"Interaction response type {cb_type} is not valid for "
                                f"interaction type {record.type}; must be one of {sorted(allowed)}",
                            }
                        ]
                    }
                },
            )
        message: StoredMessage | None = None
        include_message = False
        if cb_type == CHANNEL_MESSAGE_WITH_SOURCE:
            check_flags(data, RESPONSE_FLAGS)
            validate_message(data, file_count=len(files))
            message = self._new_message(
                record, data, files, message_type=self._message_type(record)
            )
            include_message = True
        elif cb_type == DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            check_flags(data, RESPONSE_FLAGS)
            placeholder = {"content": "", "flags": int(data.get("flags") or 0)}
            message = self._new_message(
                record,
                placeholder,
                [],
                message_type=self._message_type(record),
                extra_flags=FLAG_LOADING,
            )
            record.loading = True
        elif cb_type == DEFERRED_UPDATE_MESSAGE:
            message = fake.world.messages[int(record.source_message_id or 0)]
        elif cb_type == UPDATE_MESSAGE:
            message = fake.world.messages[int(record.source_message_id or 0)]
            validate_message(data, file_count=len(files), creating=False)
            apply_edit(fake, message, data, files)
            include_message = True
        elif cb_type == APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
            validate_autocomplete(data)
        elif cb_type == MODAL:
            validate_modal(data)
        record.response = {"type": cb_type, "data": data}
        record.response_at = asyncio.get_running_loop().time()
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        if message is not None:
            record.original_message_id = message.id
            interaction.update(
                {
                    "response_message_id": str(message.id),
                    "response_message_loading": bool(message.data["flags"] & FLAG_LOADING),
                    "response_message_ephemeral": message.ephemeral,
                }
            )
            if cb_type == UPDATE_MESSAGE:
                fake.schedule_message_event("MESSAGE_UPDATE", message)
            elif cb_type != DEFERRED_UPDATE_MESSAGE:
                fake.schedule_message_event("MESSAGE_CREATE", message)
        resource: dict[str, Any] = {"type": cb_type}
        if include_message and message is not None:
            resource["message"] = message.payload(record.user_id)
        return {"interaction": interaction, "resource": resource}

    # ---- /webhooks/{application_id}/{token}/... ------------------------------------------

    def for_webhook(self, application_id: int, token: str) -> InteractionRecord:
        record = self.by_token.get(token)
        if record is None:
            raise invalid_webhook_token()
        if application_id != self.fake.application_id:
            raise unknown_webhook()
        if utcnow() - record.created_at > TOKEN_LIFETIME:
            raise invalid_webhook_token()
        response_type = (record.response or {}).get("type")
        if response_type is None or response_type in (
            APPLICATION_COMMAND_AUTOCOMPLETE_RESULT,
            MODAL,
            PONG,
        ):
            raise unknown_webhook()
        return record

    def message_of(self, record: InteractionRecord, ref: str) -> StoredMessage:
        world = self.fake.world
        if ref == "@original":
            if record.original_message_id is None:
                raise unknown_message()
            message = world.messages.get(record.original_message_id)
        else:
            if not ref.isdigit():
                raise unknown_message()
            message_id = int(ref)
            if message_id not in record.followup_ids and message_id != record.original_message_id:
                raise unknown_message()
            message = world.messages.get(message_id)
        if message is None or message.deleted or message.channel_id not in world.channels:
            raise unknown_message()  # (a deleted channel's messages went with it)
        return message

    def followup(
        self, record: InteractionRecord, payload: dict[str, Any], files: list[UploadedFile]
    ) -> StoredMessage:
        fake = self.fake
        check_flags(payload, RESPONSE_FLAGS)
        validate_message(payload, file_count=len(files))
        if record.loading and record.original_message_id is not None:
            original = fake.world.messages[record.original_message_id]
            if not original.deleted:
                edit = {k: v for k, v in payload.items() if k != "flags"}
                apply_edit(fake, original, edit, files, mark_edited=False)
                record.loading = False
                record.followup_ids.append(original.id)
                fake.schedule_message_event("MESSAGE_UPDATE", original)
                return original
        message = self._new_message(record, payload, files, message_type=DEFAULT)
        record.followup_ids.append(message.id)
        fake.schedule_message_event("MESSAGE_CREATE", message)
        return message

    def edit(
        self,
        record: InteractionRecord,
        message: StoredMessage,
        payload: dict[str, Any],
        files: list[UploadedFile],
    ) -> StoredMessage:
        validate_message(payload, file_count=len(files), creating=False)
        if message.id == record.original_message_id:
            record.loading = False
        apply_edit(self.fake, message, payload, files)
        self.fake.schedule_message_event("MESSAGE_UPDATE", message)
        return message

    def delete(self, record: InteractionRecord, message: StoredMessage) -> None:
        message.deleted = True
        if message.id == record.original_message_id:
            record.loading = False
        self.fake.schedule_message_event("MESSAGE_DELETE", message)


class InteractionHandle:
    """What a test holds after acting as a user: watch the bot's answer to one interaction."""

    def __init__(self, fake: FakeDiscord, record: InteractionRecord) -> None:
        self._fake = fake
        self.record = record

    def __repr__(self) -> str:
        return (
            f"<InteractionHandle id={self.id} type={self.record.type} "
            f"response={self.response_type}>"
        )

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def payload(self) -> dict[str, Any]:
        """The INTERACTION_CREATE payload the bot received."""
        return self.record.payload

    @property
    def user_id(self) -> int:
        return self.record.user_id

    @property
    def response_type(self) -> int | None:
        return None if self.record.response is None else int(self.record.response["type"])

    @property
    def responded(self) -> bool:
        return self.record.response is not None

    @property
    def deferred(self) -> bool:
        return self.response_type in (
            DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
            DEFERRED_UPDATE_MESSAGE,
        )

    @property
    def ephemeral(self) -> bool:
        message_id = self.record.original_message_id
        if message_id is None:
            return False
        return self._fake.world.messages[message_id].ephemeral

    @property
    def modal(self) -> dict[str, Any] | None:
        if self.response_type != MODAL:
            return None
        assert self.record.response is not None
        return self.record.response["data"]

    @property
    def rejections(self) -> list[CallRecord]:
        """Calls the bot made for this interaction that the fake refused (4xx)."""
        return list(self.record.rejections)

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Followup messages, current state (edits applied), oldest first."""
        world = self._fake.world
        return [world.messages[i].payload(self.user_id) for i in self.record.followup_ids]

    @property
    def original_message(self) -> dict[str, Any] | None:
        """The @original message now, or None if the response created none."""
        message_id = self.record.original_message_id
        if message_id is None:
            return None
        return self._fake.world.messages[message_id].payload(self.user_id)

    async def response(self, timeout: float = 5.0) -> dict[str, Any]:
        """The initial callback ``{"type", "data"}``; raises InteractionRejected if refused."""
        record = self.record

        def ready() -> bool:
            return record.response is not None or bool(record.rejections)

        await self._fake.wait_for(ready, timeout=timeout, what=f"a response to {self!r}")
        if record.response is None:
            raise InteractionRejected(record.rejections)
        return record.response

    async def original(self, timeout: float = 5.0) -> dict[str, Any]:
        """The @original message (after waiting for a response that has one)."""
        await self.response(timeout)
        message = self.original_message
        if message is None:
            raise AssertionError(f"response type {self.response_type} has no @original message")
        return message

    async def wait_for_original(
        self, predicate: Any = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait until @original exists, is no longer loading and ``predicate(msg)`` holds."""

        def check() -> dict[str, Any] | None:
            message = self.original_message
            if message is None or message["flags"] & FLAG_LOADING:
                return None
            if predicate is not None and not predicate(message):
                return None
            return message

        return await self._fake.wait_for(check, timeout=timeout, what=f"@original of {self!r}")

    async def wait_for_followup(self, n: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """The n-th followup (1-based) once it exists; raises InteractionRejected if refused."""
        record = self.record

        def check() -> dict[str, Any] | None:
            if len(record.followup_ids) >= n:
                return self.followups[n - 1]
            return None

        try:
            return await self._fake.wait_for(
                check, timeout=timeout, what=f"followup #{n} of {self!r}"
            )
        except TimeoutError:
            if record.rejections:
                raise InteractionRejected(record.rejections) from None
            raise

    async def wait_for_rejection(self, code: int | None = None, timeout: float = 5.0) -> CallRecord:
        """The first refused call for this interaction (optionally with that error code)."""

        def check() -> CallRecord | None:
            for call in self.record.rejections:
                if code is None or call.error_code == code:
                    return call
            return None

        return await self._fake.wait_for(
            check, timeout=timeout, what=f"a rejected call (code {code}) for {self!r}"
        )
