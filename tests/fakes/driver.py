"""The driver: what tests call to act as Discord users and to inspect what the bot did.

Every action builds the payload the real Discord client would cause and refuses (with
:class:`DriverError`) what a real client could not send: unregistered commands or options,
missing required options, values outside the registered choices / ranges, clicking a button
that is not on the message, submitting a modal that was never opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .appcommands import (
    CHAT_INPUT,
    MESSAGE,
    USER,
    AttachmentSpec,
    OptionBuilder,
    check_can_use,
    find_command,
)
from .errors import DriverError, InteractionRejected
from .interactions import (
    APPLICATION_COMMAND,
    APPLICATION_COMMAND_AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    InteractionHandle,
    InteractionRecord,
)
from .messages import UploadedFile, build_message
from .state import DM, SEND_MESSAGES, VIEW_CHANNEL, StoredMessage
from .validation import ACTION_ROW, BUTTON, LABEL, SELECT_TYPES, TEXT_INPUT, walk_components

if TYPE_CHECKING:
    from .server import FakeDiscord

T = TypeVar("T")


class DriverMixin:
    """Mixed into :class:`FakeDiscord`; ``self`` is the fake."""

    # ---- waiting & inspecting ------------------------------------------------------------

    async def wait_for(
        self: FakeDiscord,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        what: str | None = None,
    ) -> T:
        """Re-check ``predicate()`` whenever the fake's state changes; return its truthy value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            self._raise_if_bot_died()
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(repr(c) for c in self.calls[-5:]) or "none"
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what or predicate!r}; "
                    f"last calls: {recent}"
                )
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))

    def channel_messages(self: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
        """Messages everyone sees in a channel (no ephemeral, no deleted), oldest first."""
        return [m.payload() for m in self.world.visible_history(channel_id)]

    def dm_messages(self: FakeDiscord, user_id: int) -> list[dict[str, Any]]:
        """Messages in the DM channel between the bot and ``user_id``, oldest first."""
        channel_id = self.world.dm_channels.get(int(user_id))
        return [] if channel_id is None else self.channel_messages(channel_id)

    def message(
        self: FakeDiscord, message_id: int, *, include_deleted: bool = False
    ) -> dict[str, Any]:
        """Any stored message by id (channel, ephemeral or followup), edits applied."""
        stored = self.world.messages.get(int(message_id))
        if stored is None or (stored.deleted and not include_deleted):
            raise DriverError(f"no message {message_id}")
        return stored.payload(stored.ephemeral_to)

    def is_deleted(self: FakeDiscord, message_id: int) -> bool:
        stored = self.world.messages.get(int(message_id))
        return stored is not None and stored.deleted

    def attachment_bytes(self: FakeDiscord, attachment: Mapping[str, Any] | str) -> bytes:
        """The stored bytes of an attachment dict (or its URL)."""
        if isinstance(attachment, str):
            attachment_id = int(attachment.split("?")[0].rstrip("/").split("/")[-2])
        else:
            attachment_id = int(attachment["id"])
        blob = self.world.blobs.get(attachment_id)
        if blob is None:
            raise DriverError(f"no stored attachment {attachment_id}")
        return blob.data

    @property
    def unknown_calls(self: FakeDiscord) -> list[Any]:
        """Requests to routes the fake does not implement."""
        return [c for c in self.calls if c.unknown_route]

    @property
    def failed_calls(self: FakeDiscord) -> list[Any]:
        """Requests the fake answered with an error status."""
        return [c for c in self.calls if c.status is not None and c.status >= 400]

    # ---- where an action happens ---------------------------------------------------------

    def _where(
        self: FakeDiscord, guild_id: int | None, channel_id: int | None, user_id: int
    ) -> tuple[int | None, int]:
        world = self.world
        if user_id not in world.users:
            raise DriverError(f"unknown user {user_id}")
        if guild_id is None:
            if channel_id is None:
                return None, world.dm_channel_for(user_id).id
            channel = world.channels.get(int(channel_id))
            if channel is None or channel.type != DM or channel.recipient_id != user_id:
                raise DriverError(f"channel {channel_id} is not {user_id}'s DM with the bot")
            return None, channel.id
        guild = world.guilds.get(int(guild_id))
        if guild is None:
            raise DriverError(f"unknown guild {guild_id}")
        if user_id not in guild.members:
            raise DriverError(f"user {user_id} is not a member of guild {guild_id}")
        if channel_id is None:
            raise DriverError("channel_id is required for guild interactions")
        channel = world.channels.get(int(channel_id))
        if channel is None or channel.guild_id != guild.id:
            raise DriverError(f"channel {channel_id} is not in guild {guild_id}")
        if not world.channel_permissions(channel, user_id) & VIEW_CHANNEL:
            raise DriverError(f"user {user_id} cannot see channel {channel_id}")
        return guild.id, channel.id

    async def _dispatch(self: FakeDiscord, record: InteractionRecord) -> InteractionHandle:
        self._raise_if_bot_died()
        if not self.gateway.connected:
            raise DriverError("no bot is connected to the fake gateway")
        record.dispatched_at = asyncio.get_running_loop().time()
        await self.gateway.dispatch_required("INTERACTION_CREATE", record.payload)
        return InteractionHandle(self, record)

    # ---- application commands ------------------------------------------------------------

    async def slash(
        self: FakeDiscord,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        command: str,
        options: Mapping[str, Any] | None = None,
        attachments: Mapping[str, AttachmentSpec] | None = None,
        created_at: dt.datetime | None = None,
    ) -> InteractionHandle:
        """Run ``/command [group] [sub]`` as ``user_id``; ``guild_id=None`` means the bot DM."""
        guild_id, channel_id = self._where(guild_id, channel_id, user_id)
        name, *path = command.split()
        cmd = find_command(self, guild_id, name, CHAT_INPUT)
        check_can_use(self, cmd, guild_id, channel_id, user_id)
        builder = OptionBuilder(self, guild_id, channel_id, user_id, attachments)
        built = builder.build(cmd, path, options or {})
        data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": CHAT_INPUT}
        if built:
            data["options"] = built
        if builder.resolved:
            data["resolved"] = builder.resolved
        if cmd.get("guild_id") is not None:
            data["guild_id"] = cmd["guild_id"]
        record = self.interactions.new(
            itype=APPLICATION_COMMAND,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            data=data,
            created_at=created_at,
            command_type=CHAT_INPUT,
            command_name=command,
        )
        return await self._dispatch(record)

    async def autocomplete(
        self: FakeDiscord,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        command: str,
        options: Mapping[str, Any] | None = None,
        focused: str = "",
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Type into an autocomplete option; return the choices the bot answered.

        Raises :class:`InteractionRejected` when the fake refused the bot's answer.
        """
        guild_id, channel_id = self._where(guild_id, channel_id, user_id)
        name, *path = command.split()
        cmd = find_command(self, guild_id, name, CHAT_INPUT)
        check_can_use(self, cmd, guild_id, channel_id, user_id)
        values = dict(options or {})
        if not focused:
            raise DriverError("autocomplete needs focused=<option name>")
        values.setdefault(focused, "")
        builder = OptionBuilder(self, guild_id, channel_id, user_id)
        built = builder.build(cmd, path, values, focused=focused)
        data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": CHAT_INPUT, "options": built}
        if builder.resolved:
            data["resolved"] = builder.resolved
        if cmd.get("guild_id") is not None:
            data["guild_id"] = cmd["guild_id"]
        record = self.interactions.new(
            itype=APPLICATION_COMMAND_AUTOCOMPLETE,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            data=data,
            command_type=CHAT_INPUT,
            command_name=command,
        )
        handle = await self._dispatch(record)
        response = await handle.response(timeout)
        return list(response["data"].get("choices") or [])

    async def message_command(
        self: FakeDiscord,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        name: str,
        target_message_id: int,
        created_at: dt.datetime | None = None,
    ) -> InteractionHandle:
        """Run the message context-menu command ``name`` on ``target_message_id``."""
        guild_id, channel_id = self._where(guild_id, channel_id, user_id)
        cmd = find_command(self, guild_id, name, MESSAGE)
        check_can_use(self, cmd, guild_id, channel_id, user_id)
        target = self._visible_message(target_message_id, user_id)
        if target.channel_id != channel_id:
            raise DriverError(f"message {target_message_id} is not in channel {channel_id}")
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": name,
            "type": MESSAGE,
            "target_id": str(target.id),
            "resolved": {"messages": {str(target.id): self.gateway_message_payload(target)}},
        }
        if cmd.get("guild_id") is not None:
            data["guild_id"] = cmd["guild_id"]
        record = self.interactions.new(
            itype=APPLICATION_COMMAND,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            data=data,
            created_at=created_at,
            command_type=MESSAGE,
            command_name=name,
        )
        return await self._dispatch(record)

    async def user_command(
        self: FakeDiscord,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        name: str,
        target_user_id: int,
        created_at: dt.datetime | None = None,
    ) -> InteractionHandle:
        """Run the user context-menu command ``name`` on ``target_user_id``."""
        guild_id, channel_id = self._where(guild_id, channel_id, user_id)
        cmd = find_command(self, guild_id, name, USER)
        check_can_use(self, cmd, guild_id, channel_id, user_id)
        builder = OptionBuilder(self, guild_id, channel_id, user_id)
        builder._user("target", target_user_id)
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": name,
            "type": USER,
            "target_id": str(target_user_id),
            "resolved": builder.resolved,
        }
        if cmd.get("guild_id") is not None:
            data["guild_id"] = cmd["guild_id"]
        record = self.interactions.new(
            itype=APPLICATION_COMMAND,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            data=data,
            created_at=created_at,
            command_type=USER,
            command_name=name,
        )
        return await self._dispatch(record)

    # ---- components & modals -------------------------------------------------------------

    def _visible_message(self: FakeDiscord, message_id: int, user_id: int) -> StoredMessage:
        stored = self.world.messages.get(int(message_id))
        if stored is None or stored.deleted:
            raise DriverError(f"no message {message_id} (deleted or never sent)")
        if stored.ephemeral_to is not None and stored.ephemeral_to != user_id:
            raise DriverError(
                f"message {message_id} is ephemeral for user {stored.ephemeral_to}; "
                f"user {user_id} cannot see it"
            )
        return stored

    def _component(
        self: FakeDiscord, stored: StoredMessage, custom_id: str, kinds: set[int]
    ) -> dict[str, Any]:
        found = [
            c
            for c in walk_components(stored.data.get("components") or [])
            if c.get("custom_id") == custom_id
        ]
        if not found or found[0].get("type") not in kinds:
            ids = [
                (c.get("type"), c.get("custom_id"))
                for c in walk_components(stored.data.get("components") or [])
                if c.get("custom_id") is not None
            ]
            raise DriverError(
                f"message {stored.id} has no component {custom_id!r} of type {sorted(kinds)}; "
                f"it has {ids}"
            )
        component = found[0]
        if component.get("disabled"):
            raise DriverError(f"component {custom_id!r} on message {stored.id} is disabled")
        return component

    def _component_where(
        self: FakeDiscord,
        stored: StoredMessage,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
    ) -> tuple[int | None, int]:
        channel = self.world.channel(stored.channel_id)
        if channel_id is not None and int(channel_id) != channel.id:
            raise DriverError(f"message {stored.id} is in channel {channel.id}, not {channel_id}")
        if guild_id is not None and channel.guild_id != int(guild_id):
            raise DriverError(f"message {stored.id} is not in guild {guild_id}")
        return self._where(channel.guild_id, channel.id, user_id)

    async def click(
        self: FakeDiscord,
        message_id: int,
        custom_id: str,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        created_at: dt.datetime | None = None,
    ) -> InteractionHandle:
        """Click the button ``custom_id`` on a stored message (channel, ephemeral or followup)."""
        stored = self._visible_message(message_id, user_id)
        self._component(stored, custom_id, {BUTTON})
        guild_id, channel_id = self._component_where(stored, user_id, guild_id, channel_id)
        record = self.interactions.new(
            itype=MESSAGE_COMPONENT,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            data={"custom_id": custom_id, "component_type": BUTTON},
            created_at=created_at,
            message=stored.payload(user_id),
            source_message_id=stored.id,
        )
        return await self._dispatch(record)

    async def select(
        self: FakeDiscord,
        message_id: int,
        custom_id: str,
        values: Sequence[Any],
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> InteractionHandle:
        """Pick ``values`` in the select menu ``custom_id`` on a stored message."""
        stored = self._visible_message(message_id, user_id)
        component = self._component(stored, custom_id, SELECT_TYPES)
        guild_id, channel_id = self._component_where(stored, user_id, guild_id, channel_id)
        data = self._select_data(component, values, guild_id, channel_id, user_id)
        record = self.interactions.new(
            itype=MESSAGE_COMPONENT,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            data=data,
            message=stored.payload(user_id),
            source_message_id=stored.id,
        )
        return await self._dispatch(record)

    def _select_data(
        self: FakeDiscord,
        component: dict[str, Any],
        values: Sequence[Any],
        guild_id: int | None,
        channel_id: int,
        user_id: int,
    ) -> dict[str, Any]:
        ctype = int(component["type"])
        lo = int(component.get("min_values", 1))
        hi = int(component.get("max_values", 1))
        if not lo <= len(values) <= hi:
            raise DriverError(
                f"select {component['custom_id']!r} takes {lo}..{hi} values; got {len(values)}"
            )
        builder = OptionBuilder(self, guild_id, channel_id, user_id)
        picked: list[str] = []
        for value in values:
            if ctype == 3:
                allowed = [o["value"] for o in component.get("options") or []]
                if value not in allowed:
                    raise DriverError(
                        f"{value!r} is not an option of {component['custom_id']!r}: {allowed}"
                    )
                picked.append(str(value))
            elif ctype == 5:
                picked.append(builder._user(component["custom_id"], value))
            elif ctype == 6:
                picked.append(builder._role(component["custom_id"], value))
            elif ctype == 7:
                if int(value) in self.world.users:
                    picked.append(builder._user(component["custom_id"], value))
                else:
                    picked.append(builder._role(component["custom_id"], value))
            else:
                picked.append(builder._channel({"name": component["custom_id"]}, value))
        data: dict[str, Any] = {
            "custom_id": component["custom_id"],
            "component_type": ctype,
            "values": picked,
        }
        if builder.resolved:
            data["resolved"] = builder.resolved
        return data

    async def submit_modal(
        self: FakeDiscord,
        handle: InteractionHandle,
        values: Mapping[str, Any],
        user_id: int | None = None,
        created_at: dt.datetime | None = None,
    ) -> InteractionHandle:
        """Fill in and submit the modal the bot opened in answer to ``handle``.

        ``values`` maps text-input custom ids to strings (select custom ids to lists).
        """
        modal = handle.modal
        if modal is None:
            await handle.response()
            modal = handle.modal
        if modal is None:
            raise DriverError(f"{handle!r} did not answer with a modal (type 9)")
        parent = handle.record
        user_id = parent.user_id if user_id is None else user_id
        if user_id != parent.user_id:
            raise DriverError("only the user who opened a modal can submit it")
        remaining = dict(values)
        components: list[dict[str, Any]] = []
        for comp in modal.get("components") or []:
            if comp.get("type") == ACTION_ROW:
                inner = (comp.get("components") or [{}])[0]
                components.append(
                    {"type": ACTION_ROW, "components": [self._modal_value(inner, remaining)]}
                )
            elif comp.get("type") == LABEL:
                inner = comp.get("component") or {}
                entry: dict[str, Any] = {
                    "type": LABEL,
                    "component": self._modal_value(inner, remaining),
                }
                if "id" in comp:
                    entry["id"] = comp["id"]
                components.append(entry)
        if remaining:
            raise DriverError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(remaining)}")
        source = parent.source_message_id
        message = None
        if source is not None:
            message = self.world.messages[source].payload(user_id)
        record = self.interactions.new(
            itype=MODAL_SUBMIT,
            guild_id=parent.guild_id,
            channel_id=parent.channel_id,
            user_id=user_id,
            data={"custom_id": modal["custom_id"], "components": components},
            created_at=created_at,
            message=message,
            source_message_id=source,
            parent=parent,
        )
        return await self._dispatch(record)

    @staticmethod
    def _modal_value(component: dict[str, Any], remaining: dict[str, Any]) -> dict[str, Any]:
        custom_id = component.get("custom_id")
        ctype = component.get("type")
        result: dict[str, Any] = {"type": ctype, "custom_id": custom_id}
        if "id" in component:
            result["id"] = component["id"]
        if ctype == TEXT_INPUT:
            value = remaining.pop(custom_id, component.get("value") or "")
            if not isinstance(value, str):
                raise DriverError(f"text input {custom_id!r} takes a string; got {value!r}")
            required = component.get("required", True)
            lo = component.get("min_length")
            hi = component.get("max_length")
            if required and not value:
                raise DriverError(f"text input {custom_id!r} is required")
            if value and (
                (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi)
            ):
                raise DriverError(
                    f"text input {custom_id!r}: length {len(value)} outside [{lo}, {hi}]"
                )
            result["value"] = value
        elif ctype in SELECT_TYPES:
            picked = remaining.pop(custom_id, [])
            options = [o["value"] for o in component.get("options") or []]
            if ctype == 3 and any(v not in options for v in picked):
                raise DriverError(f"select {custom_id!r}: {picked} not all in {options}")
            result["values"] = [str(v) for v in picked]
        else:
            result["values"] = [str(v) for v in remaining.pop(custom_id, [])]
        return result

    # ---- plain messages from users -------------------------------------------------------

    async def post_message(
        self: FakeDiscord,
        channel_id: int,
        user_id: int,
        content: str = "",
        attachments: Sequence[AttachmentSpec] = (),
    ) -> dict[str, Any]:
        """A user posts a message (delivered to the bot as MESSAGE_CREATE)."""
        world = self.world
        channel = world.channels.get(int(channel_id))
        if channel is None:
            raise DriverError(f"unknown channel {channel_id}")
        if channel.type != DM:
            perms = world.channel_permissions(channel, user_id)
            if not perms & VIEW_CHANNEL or not perms & SEND_MESSAGES:
                raise DriverError(f"user {user_id} cannot send in channel {channel_id}")
        files = [
            UploadedFile(f"files[{i}]", i, spec[0], spec[1]) for i, spec in enumerate(attachments)
        ]
        message = build_message(
            self,
            channel=channel,
            author=world.user(user_id),
            payload={"content": content},
            files=files,
        )
        for spec, att in zip(attachments, message.data["attachments"], strict=True):
            if len(spec) == 3:
                att["content_type"] = spec[2]
        world.store_message(message)
        self.schedule_message_event("MESSAGE_CREATE", message)
        self.notify()
        return message.payload()


__all__ = ["DriverMixin", "InteractionHandle", "InteractionRejected"]
