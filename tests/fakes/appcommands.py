"""Registered application commands: validation on sync, storage, and what the Discord client
does when a user runs one (find the command, check and type the option values)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import DriverError, FormErrors
from .messages import store_upload
from .state import ADMINISTRATOR, ALL_PERMISSIONS, USE_APPLICATION_COMMANDS

if TYPE_CHECKING:
    from .server import FakeDiscord

CHAT_INPUT = 1
USER = 2
MESSAGE = 3

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
USER_OPTION = 6
CHANNEL = 7
ROLE = 8
MENTIONABLE = 9
NUMBER = 10
ATTACHMENT = 11

MAX_CHAT_INPUT_COMMANDS = 100
# discord.py's tree refuses more than 5 context menus of a type; Discord's own limit is higher.
MAX_CONTEXT_MENU_COMMANDS = 15
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_COMMAND_SIZE = 4000
MAX_SAFE_INT = 2**53

_NAME_RE = re.compile(r"^[-_'\w\u0900-\u097F\u0E00-\u0E7F]{1,32}$")

#: Attachment given to the driver: (filename, bytes) or (filename, bytes, content_type).
AttachmentSpec = tuple[str, bytes] | tuple[str, bytes, str]


# ---- validation on PUT / POST -----------------------------------------------------------------


def validate_commands(commands: list[dict[str, Any]], *, guild: bool) -> None:
    errors = FormErrors()
    seen: set[tuple[int, str]] = set()
    counts = {CHAT_INPUT: 0, USER: 0, MESSAGE: 0}
    for index, command in enumerate(commands):
        ctype = int(command.get("type") or CHAT_INPUT)
        counts[ctype] = counts.get(ctype, 0) + 1
        name = command.get("name")
        key = (ctype, str(name))
        if key in seen:
            errors.add(
                [index, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique ({name})",
            )
        seen.add(key)
        _validate_command(errors, [index], command, ctype)
    if counts[CHAT_INPUT] > MAX_CHAT_INPUT_COMMANDS:
        errors.max_length([], MAX_CHAT_INPUT_COMMANDS)
    for ctype in (USER, MESSAGE):
        if counts.get(ctype, 0) > MAX_CONTEXT_MENU_COMMANDS:
            errors.add(
                [],
                "APPLICATION_COMMANDS_TOO_MANY",
                f"Maximum number of application commands of type {ctype} reached "
                f"({MAX_CONTEXT_MENU_COMMANDS})",
            )
    errors.raise_if_any()


def validate_command(command: dict[str, Any]) -> None:
    errors = FormErrors()
    _validate_command(errors, [], command, int(command.get("type") or CHAT_INPUT))
    errors.raise_if_any()


def _validate_command(
    errors: FormErrors, path: list[str | int], cmd: dict[str, Any], ctype: int
) -> None:
    name = cmd.get("name")
    description = cmd.get("description")
    if ctype == CHAT_INPUT:
        _validate_name(errors, [*path, "name"], name)
        _validate_description(errors, [*path, "description"], description)
        _validate_options(errors, [*path, "options"], cmd.get("options") or [], depth=0)
        if _size(cmd) > MAX_COMMAND_SIZE:
            errors.add(
                path,
                "APPLICATION_COMMAND_TOO_LARGE",
                f"Command exceeds maximum size ({MAX_COMMAND_SIZE})",
            )
    elif ctype in (USER, MESSAGE):
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            errors.length_between([*path, "name"], 1, 32)
        if description:
            errors.add(
                [*path, "description"],
                "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                "Context menu commands cannot have description",
            )
        if cmd.get("options"):
            errors.add(
                [*path, "options"],
                "APPLICATION_COMMAND_OPTIONS_NOT_ALLOWED",
                "Context menu commands cannot have options",
            )
    else:
        errors.add([*path, "type"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.")


def _validate_name(errors: FormErrors, path: list[str | int], name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        errors.length_between(path, 1, 32)
    elif not _NAME_RE.match(name) or name != name.lower():
        errors.add(path, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid ({name})")


def _validate_description(errors: FormErrors, path: list[str | int], description: Any) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        errors.length_between(path, 1, 100)


def _validate_options(
    errors: FormErrors, path: list[str | int], options: list[dict[str, Any]], *, depth: int
) -> None:
    if len(options) > MAX_OPTIONS:
        errors.max_length(path, MAX_OPTIONS)
        return
    names: set[str] = set()
    kinds = {int(o.get("type", 0)) in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options}
    if len(kinds) > 1:
        errors.add(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive to all other "
            "types",
        )
    optional_seen = False
    for i, option in enumerate(options):
        opath = [*path, i]
        otype = int(option.get("type", 0))
        name = option.get("name")
        _validate_name(errors, [*opath, "name"], name)
        _validate_description(errors, [*opath, "description"], option.get("description"))
        if name in names:
            errors.add(
                [*opath, "name"],
                "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
                "Option names must be unique",
            )
        names.add(str(name))
        if otype == SUB_COMMAND_GROUP:
            if depth != 0:
                errors.add(
                    [*opath, "type"],
                    "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                    "Sub-command groups can only be nested at the top level",
                )
            subs = option.get("options") or []
            for j, sub in enumerate(subs):
                if int(sub.get("type", 0)) != SUB_COMMAND:
                    errors.add(
                        [*opath, "options", j, "type"],
                        "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                        "Sub-command groups can only contain sub-commands",
                    )
            _validate_options(errors, [*opath, "options"], subs, depth=depth + 1)
            continue
        if otype == SUB_COMMAND:
            if depth > 1:
                errors.add(
                    [*opath, "type"],
                    "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                    "Sub-commands cannot be nested this deep",
                )
            _validate_options(errors, [*opath, "options"], option.get("options") or [], depth=2)
            continue
        if otype not in (
            STRING,
            INTEGER,
            BOOLEAN,
            USER_OPTION,
            CHANNEL,
            ROLE,
            MENTIONABLE,
            NUMBER,
            ATTACHMENT,
        ):
            errors.add([*opath, "type"], "BASE_TYPE_CHOICES", "Invalid option type")
            continue
        if option.get("required"):
            if optional_seen:
                errors.add(
                    [*opath, "required"],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = option.get("choices")
        if choices is not None:
            if otype not in (STRING, INTEGER, NUMBER):
                errors.add(
                    [*opath, "choices"],
                    "APPLICATION_COMMAND_OPTION_CHOICES_INVALID",
                    "Choices are only allowed for string, integer and number options",
                )
            if len(choices) > MAX_CHOICES:
                errors.max_length([*opath, "choices"], MAX_CHOICES)
            for k, choice in enumerate(choices[:MAX_CHOICES]):
                cname = choice.get("name")
                if not isinstance(cname, str) or not 1 <= len(cname) <= 100:
                    errors.length_between([*opath, "choices", k, "name"], 1, 100)
                value = choice.get("value")
                if otype == STRING and (not isinstance(value, str) or not 1 <= len(value) <= 100):
                    errors.length_between([*opath, "choices", k, "value"], 1, 100)
                if otype == INTEGER and (isinstance(value, bool) or not isinstance(value, int)):
                    errors.add(
                        [*opath, "choices", k, "value"], "NUMBER_TYPE_COERCE", "Value is not int."
                    )
            if option.get("autocomplete"):
                errors.add(
                    [*opath, "autocomplete"],
                    "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_AND_CHOICES",
                    "Autocomplete and choices cannot both be set",
                )
        for key, low, high in (("min_length", 0, 6000), ("max_length", 1, 6000)):
            value = option.get(key)
            if value is not None and not low <= int(value) <= high:
                errors.add([*opath, key], "NUMBER_TYPE_MAX", f"int value should be <= {high}.")
        lo, hi = option.get("min_value"), option.get("max_value")
        if lo is not None and hi is not None and lo > hi:
            errors.add([*opath, "min_value"], "NUMBER_TYPE_MAX", "min_value must be <= max_value")


def _size(cmd: Mapping[str, Any]) -> int:
    total = len(str(cmd.get("name") or "")) + len(str(cmd.get("description") or ""))
    for choice in cmd.get("choices") or []:
        total += len(str(choice.get("name") or "")) + len(str(choice.get("value") or ""))
    for option in cmd.get("options") or []:
        total += _size(option)
    return total


def normalise_command(
    fake: FakeDiscord, raw: dict[str, Any], *, guild_id: int | None, command_id: int | None
) -> dict[str, Any]:
    """The stored / returned form of a command, as Discord echoes it back."""
    ctype = int(raw.get("type") or CHAT_INPUT)
    perms = raw.get("default_member_permissions")
    data: dict[str, Any] = {
        "id": str(command_id or fake.snowflakes.new()),
        "application_id": str(fake.application_id),
        "version": str(fake.snowflakes.new()),
        "default_member_permissions": None if perms is None else str(perms),
        "type": ctype,
        "name": raw["name"],
        "name_localizations": raw.get("name_localizations"),
        "description": raw.get("description") or "",
        "description_localizations": raw.get("description_localizations"),
        "nsfw": bool(raw.get("nsfw", False)),
        "contexts": raw.get("contexts"),
        "integration_types": raw.get("integration_types") or [0],
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    else:
        dm = raw.get("dm_permission")
        data["dm_permission"] = True if dm is None else bool(dm)
    if raw.get("options"):
        data["options"] = raw["options"]
    return data


# ---- what a Discord client does when a user invokes a command ---------------------------------


def find_command(fake: FakeDiscord, guild_id: int | None, name: str, ctype: int) -> dict[str, Any]:
    scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
    for scope in scopes:
        for cmd in fake.commands.get(scope, []):
            if cmd["name"] == name and int(cmd["type"]) == ctype:
                return cmd
    available = sorted(
        f"{c['name']} (type {c['type']}, {'guild ' + str(s) if s else 'global'})"
        for s in scopes
        for c in fake.commands.get(s, [])
    )
    raise DriverError(
        f"no registered command {name!r} of type {ctype} visible in "
        f"{'guild ' + str(guild_id) if guild_id else 'DMs'}; registered: {available or 'none'} "
        "(did the bot sync its command tree?)"
    )


def check_can_use(
    fake: FakeDiscord, command: dict[str, Any], guild_id: int | None, channel_id: int, user_id: int
) -> None:
    """The client hides commands the user may not run; refuse to send those."""
    contexts = command.get("contexts")
    if guild_id is None:
        if command.get("guild_id") is not None:
            raise DriverError(f"guild command {command['name']!r} cannot be used in DMs")
        if contexts is not None and 1 not in contexts:
            raise DriverError(f"command {command['name']!r} is not allowed in bot DMs (contexts)")
        if contexts is None and command.get("dm_permission") is False:
            raise DriverError(f"command {command['name']!r} has dm_permission=False")
        return
    if contexts is not None and 0 not in contexts:
        raise DriverError(f"command {command['name']!r} is not allowed in guilds (contexts)")
    world = fake.world
    channel = world.channel(channel_id)
    perms = world.channel_permissions(channel, user_id)
    if not perms & USE_APPLICATION_COMMANDS:
        raise DriverError(f"user {user_id} lacks Use Application Commands in channel {channel_id}")
    required = command.get("default_member_permissions")
    if required is not None:
        needed = int(required)
        base = world.base_permissions(world.guild(guild_id), user_id)
        if (
            base != ALL_PERMISSIONS
            and not base & ADMINISTRATOR
            and (needed == 0 or (perms & needed) != needed)
        ):
            raise DriverError(
                f"user {user_id} cannot see {command['name']!r}: "
                f"default_member_permissions={needed} not met"
            )


def _leaf(
    command: dict[str, Any], path: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Walk ``path`` (sub-command group / sub-command names); return (chain, leaf options)."""
    options = command.get("options") or []
    chain: list[dict[str, Any]] = []
    for part in path:
        match = next(
            (
                o
                for o in options
                if o["name"] == part and int(o["type"]) in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if match is None:
            names = [
                o["name"] for o in options if int(o["type"]) in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ]
            raise DriverError(
                f"{command['name']!r} has no sub-command {part!r} at this level; has {names}"
            )
        chain.append(match)
        options = match.get("options") or []
    if any(int(o["type"]) in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
        names = [o["name"] for o in options]
        raise DriverError(
            f"{' '.join([command['name'], *path])!r} is a group, not a runnable command; "
            f"pick one of {names}"
        )
    return chain, options


class OptionBuilder:
    """Types option values from the registered definitions and fills ``resolved``."""

    def __init__(
        self,
        fake: FakeDiscord,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        attachments: Mapping[str, AttachmentSpec] | None = None,
    ) -> None:
        self.fake = fake
        self.user_id = user_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.attachments = dict(attachments or {})
        self.resolved: dict[str, dict[str, Any]] = {}

    def build(
        self,
        command: dict[str, Any],
        path: list[str],
        values: Mapping[str, Any],
        *,
        focused: str | None = None,
    ) -> list[dict[str, Any]]:
        chain, defs = _leaf(command, path)
        given = dict(values)
        for name in self.attachments:
            given.setdefault(name, self.attachments[name])
        by_name = {d["name"]: d for d in defs}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise DriverError(
                f"/{' '.join([command['name'], *path])} has no option(s) {unknown}; "
                f"registered: {sorted(by_name)}"
            )
        if focused is not None:
            if focused not in by_name:
                raise DriverError(f"no option {focused!r} to focus")
            if not by_name[focused].get("autocomplete"):
                raise DriverError(f"option {focused!r} is not registered with autocomplete")
        leaf: list[dict[str, Any]] = []
        for definition in defs:
            name = definition["name"]
            if name not in given:
                if definition.get("required") and focused is None:
                    raise DriverError(
                        f"required option {name!r} of /{' '.join([command['name'], *path])} "
                        "is missing (the Discord client will not send the command)"
                    )
                continue
            if focused is not None and name == focused:
                leaf.append(
                    {
                        "name": name,
                        "type": int(definition["type"]),
                        "value": str(given[name]),
                        "focused": True,
                    }
                )
                continue
            value = self._value(definition, given[name], partial=focused is not None)
            leaf.append({"name": name, "type": int(definition["type"]), "value": value})
        options = leaf
        for node in reversed(chain):
            options = [{"name": node["name"], "type": int(node["type"]), "options": options}]
        return options

    def _value(self, definition: dict[str, Any], raw: Any, *, partial: bool) -> Any:
        name = definition["name"]
        otype = int(definition["type"])
        choices = definition.get("choices")
        if otype == STRING:
            if not isinstance(raw, str):
                raise DriverError(f"option {name!r} is a string option; got {raw!r}")
            lo, hi = definition.get("min_length"), definition.get("max_length", 6000)
            if not partial and ((lo is not None and len(raw) < lo) or len(raw) > hi):
                raise DriverError(f"option {name!r}: length {len(raw)} outside [{lo}, {hi}]")
            value: Any = raw
        elif otype == INTEGER:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise DriverError(f"option {name!r} is an integer option; got {raw!r}")
            try:
                value = int(raw)
            except ValueError as exc:
                raise DriverError(f"option {name!r} is an integer option; got {raw!r}") from exc
            self._range(definition, value, partial)
        elif otype == NUMBER:
            if isinstance(raw, bool):
                raise DriverError(f"option {name!r} is a number option; got {raw!r}")
            try:
                value = float(raw)
            except (TypeError, ValueError) as exc:
                raise DriverError(f"option {name!r} is a number option; got {raw!r}") from exc
            self._range(definition, value, partial)
        elif otype == BOOLEAN:
            if not isinstance(raw, bool):
                raise DriverError(f"option {name!r} is a boolean option; got {raw!r}")
            value = raw
        elif otype == USER_OPTION:
            value = self._user(name, raw)
        elif otype == CHANNEL:
            value = self._channel(definition, raw)
        elif otype == ROLE:
            value = self._role(name, raw)
        elif otype == MENTIONABLE:
            ident = int(raw)
            if ident in self.fake.world.users:
                value = self._user(name, ident)
            else:
                value = self._role(name, ident)
        elif otype == ATTACHMENT:
            value = self._attachment(name, raw)
        else:
            raise DriverError(f"option {name!r} has unsupported type {otype}")
        if choices is not None and not partial:
            allowed = [c["value"] for c in choices]
            if value not in allowed:
                raise DriverError(
                    f"option {name!r}: {value!r} is not one of the registered choices {allowed}"
                )
        return value

    @staticmethod
    def _range(definition: dict[str, Any], value: float, partial: bool) -> None:
        if abs(value) > MAX_SAFE_INT:
            raise DriverError(f"option {definition['name']!r}: {value} is out of range")
        lo, hi = definition.get("min_value"), definition.get("max_value")
        if partial:
            return
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise DriverError(
                f"option {definition['name']!r}: {value} outside registered range [{lo}, {hi}]"
            )

    def _user(self, name: str, raw: Any) -> str:
        world = self.fake.world
        user_id = int(raw)
        if user_id not in world.users:
            raise DriverError(f"option {name!r}: unknown user {raw!r}")
        self.resolved.setdefault("users", {})[str(user_id)] = world.users[user_id].payload()
        if self.guild_id is not None:
            guild = world.guild(self.guild_id)
            if user_id in guild.members:
                member = world.member_payload(guild, user_id, with_user=False)
                member["permissions"] = str(
                    world.channel_permissions(world.channel(self.channel_id), user_id)
                )
                self.resolved.setdefault("members", {})[str(user_id)] = member
        return str(user_id)

    def _role(self, name: str, raw: Any) -> str:
        if self.guild_id is None:
            raise DriverError(f"option {name!r}: roles only exist in guilds")
        guild = self.fake.world.guild(self.guild_id)
        role = guild.roles.get(int(raw))
        if role is None:
            raise DriverError(f"option {name!r}: unknown role {raw!r} in guild {self.guild_id}")
        self.resolved.setdefault("roles", {})[str(role.id)] = role.payload()
        return str(role.id)

    def _channel(self, definition: dict[str, Any], raw: Any) -> str:
        world = self.fake.world
        channel = world.channels.get(int(raw))
        if channel is None or channel.guild_id != self.guild_id:
            raise DriverError(f"option {definition['name']!r}: channel {raw!r} not in this guild")
        types = definition.get("channel_types")
        if types and channel.type not in types:
            raise DriverError(
                f"option {definition['name']!r}: channel type {channel.type} not in {types}"
            )
        data = channel.payload(world)
        data["permissions"] = str(world.channel_permissions(channel, self.user_id))
        self.resolved.setdefault("channels", {})[str(channel.id)] = data
        return str(channel.id)

    def _attachment(self, name: str, raw: Any) -> str:
        if not isinstance(raw, tuple) or len(raw) not in (2, 3):
            raise DriverError(
                f"option {name!r} is an attachment option; pass (filename, bytes[, content_type])"
            )
        filename, data = raw[0], raw[1]
        attachment = store_upload(self.fake, self.channel_id, filename, data, ephemeral=True)
        if len(raw) == 3:
            attachment["content_type"] = raw[2]
        if len(data) > self.fake.upload_limit:
            raise DriverError(
                f"option {name!r}: {len(data)} bytes exceeds the upload limit the client enforces "
                f"({self.fake.upload_limit})"
            )
        self.resolved.setdefault("attachments", {})[attachment["id"]] = attachment
        return attachment["id"]
