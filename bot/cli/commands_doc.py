"""`python -m bot commands-doc > docs/commands.md`: the commands reference, generated from the
command tree the bot registers with Discord, so the reference cannot drift from the code.

The tree is built without connecting anywhere: the Bot is constructed with services on a
temporary database (no settings file, no environment: the tree does not depend on them), the
cogs' extensions are loaded, and each command's registration payload (exactly what Discord
receives at sync) is rendered as Markdown. tests/test_commands_doc.py fails when
docs/commands.md differs from the output.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from bot.config import DatabaseSettings, Settings

REGENERATE = "python -m bot commands-doc > docs/commands.md"

# Who may use a command follows from its default permissions (Discord hides it from those who
# lack them; the cogs check the same people again at runtime). A command asking for anything
# else is refused here until someone says who it is for.
MANAGE_MESSAGES = 1 << 13
MANAGE_GUILD = 1 << 5
AUDIENCES: dict[int | None, str] = {
    None: "members",
    MANAGE_MESSAGES: "moderators",
    MANAGE_GUILD: "admins",
}

OPTION_TYPES = {
    3: "text",
    4: "whole number",
    5: "True/False",
    6: "member",
    7: "channel",
    8: "role",
    9: "member or role",
    10: "number",
    11: "file",
}
CHANNEL_TYPES = {
    0: "text",
    2: "voice",
    4: "category",
    5: "announcement",
    10: "announcement thread",
    11: "public thread",
    12: "private thread",
    13: "stage",
    15: "forum",
    16: "media",
}
SUBCOMMAND, SUBCOMMAND_GROUP = 1, 2
CHAT_INPUT, USER_MENU, MESSAGE_MENU = 1, 2, 3

INTRO = f"""# Commands reference

<!-- Generated from the bot's command tree by `{REGENERATE}`;
do not edit by hand. tests/test_commands_doc.py fails when this file and the commands differ. -->

Every slash command and context menu the bot registers, with its options as Discord shows
them. Options marked "no" under *required* can be left out.

**Who may use a command.** *Members*: anyone not banned, in a channel where image commands are
allowed. *Moderators*: Manage Messages, or the moderator role (`/settings mod-role`). *Admins*:
Manage Server, or the admin role (`/settings admin-role`). This follows each command's default
permissions, which is what Discord uses to hide a command from people who lack them; the bot
checks moderators and admins again every time, so showing a command to more people (Server
Settings → Integrations) gives no one more power. Some options say "(moderators)": anyone may
use the command, only moderators that option.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "commands-doc", help="print the commands reference (Markdown) built from the command tree"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # discord.py warns about voice support whenever a client is built; not this command's news.
    logging.getLogger("discord.client").setLevel(logging.ERROR)
    sys.stdout.write(render(asyncio.run(registered_commands())))
    return 0


async def registered_commands() -> list[dict[str, Any]]:
    """The registration payload of every command, as the bot would sync it."""
    from bot.discord_adapter.bot import EXTENSIONS, ImageBot  # discord.py only for this command
    from bot.services import build_services

    with tempfile.TemporaryDirectory() as folder:
        # model_construct: the defaults only, not the environment or a settings file.
        settings = Settings.model_construct(
            database=DatabaseSettings(path=Path(folder) / "commands.sqlite3")
        )
        # A base URL and token of its own, so no simulator starts; nothing is ever called.
        services = await build_services(settings, base_url="http://127.0.0.1:9", token="unused")
        try:
            bot = ImageBot(services)
            try:
                for extension in EXTENSIONS:
                    await bot.load_extension(extension)
                return [command.to_dict(bot.tree) for command in bot.tree.get_commands()]
            finally:
                await bot.close()
        finally:
            await services.aclose()


def render(commands: list[dict[str, Any]]) -> str:
    """The Markdown reference; commands in name order, subcommands and options as declared."""
    slash = sorted((c for c in commands if c.get("type", CHAT_INPUT) == CHAT_INPUT), key=_name)
    menus = {
        kind: sorted((c for c in commands if c.get("type") == kind), key=_name)
        for kind in (MESSAGE_MENU, USER_MENU)
    }
    lines = [INTRO, "## Overview", "", "| command | who | what it does |", "|---|---|---|"]
    for command in slash:
        who = audience(command)
        for path, leaf in leaves(command):
            lines.append(f"| `/{path}` | {who} | {cell(leaf.get('description'))} |")
    for kind, label in ((MESSAGE_MENU, "message menu"), (USER_MENU, "user menu")):
        for menu in menus[kind]:
            lines.append(f"| {label} **{menu['name']}** | {audience(menu)} | |")
    for command in slash:
        lines += ["", f"## /{command['name']}", "", _heading_line(command)]
        for path, leaf in leaves(command):
            if path != command["name"]:
                lines += ["", f"### /{path}", "", sentence(leaf.get("description"))]
            lines += ["", *option_table(leaf.get("options") or [])]
    lines += ["", "## Context menus", ""]
    for kind, label in ((MESSAGE_MENU, "Message"), (USER_MENU, "User")):
        target = label.lower()
        if not menus[kind]:
            lines += [f"{label} menus: none.", ""]
        for menu in menus[kind]:
            lines += [
                f"### {label} menu: {menu['name']}",
                "",
                f"Right-click (or long-press) a {target} → **Apps** → **{menu['name']}**. "
                f"Who: {audience(menu)}.{where(menu)}",
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def audience(command: dict[str, Any]) -> str:
    raw = command.get("default_member_permissions")
    key = None if raw is None else int(raw)
    if key not in AUDIENCES:
        raise ValueError(
            f"/{command['name']} asks for permissions {raw}: say who that is in AUDIENCES"
        )
    return AUDIENCES[key]


def where(command: dict[str, Any]) -> str:
    return "" if command.get("dm_permission") is False else " Also in direct messages."


def leaves(command: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(full name, payload) of every command a member can run: subcommands, else the command."""
    path = f"{prefix} {command['name']}".strip()
    children = [
        o for o in command.get("options") or [] if o.get("type") in (SUBCOMMAND, SUBCOMMAND_GROUP)
    ]
    if not children:
        return [(path, command)]
    return [leaf for child in children for leaf in leaves(child, path)]


def option_table(options: list[dict[str, Any]]) -> list[str]:
    if not options:
        return ["No options."]
    lines = [
        "| option | type | required | description | values |",
        "|---|---|---|---|---|",
    ]
    for o in options:
        lines.append(
            f"| `{o['name']}` | {OPTION_TYPES.get(o['type'], str(o['type']))}"
            f" | {'yes' if o.get('required') else 'no'} | {cell(o.get('description'))}"
            f" | {values(o)} |"
        )
    return lines


def values(option: dict[str, Any]) -> str:
    """What the option accepts beyond its type: choices, ranges, lengths, suggestions."""
    parts = []
    if option.get("choices"):
        parts.append(", ".join(_choice(c) for c in option["choices"]))
    low, high = option.get("min_value"), option.get("max_value")
    if low is not None or high is not None:
        parts.append(_range(low, high))
    short, long = option.get("min_length"), option.get("max_length")
    if short is not None or long is not None:
        parts.append(_range(short, long) + " characters")
    if option.get("channel_types"):
        kinds = [CHANNEL_TYPES.get(t, str(t)) for t in sorted(option["channel_types"])]
        parts.append(", ".join(kinds) + " channels")
    if option.get("autocomplete"):
        parts.append("suggestions as you type")
    return cell("; ".join(parts))


def _choice(choice: dict[str, Any]) -> str:
    name, value = choice["name"], choice["value"]
    return f"`{name}`" if str(value) == name else f"`{name}` (`{value}`)"


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:,}–{high:,}"
    return f"at least {low:,}" if low is not None else f"at most {high:,}"


def _heading_line(command: dict[str, Any]) -> str:
    return f"{sentence(command.get('description'))} Who: {audience(command)}.{where(command)}"


def sentence(text: str | None) -> str:
    text = (text or "").strip()
    if not text or text == "…":  # discord.py's placeholder for "no description"
        return ""
    return text if text.endswith((".", "!", "?")) else text + "."


def cell(text: str | None) -> str:
    """Text made safe for one Markdown table cell."""
    text = (text or "").strip()
    if text == "…":
        return ""
    return " ".join(text.split()).replace("|", "\\|")


def _name(command: dict[str, Any]) -> str:
    return str(command["name"]).lower()
