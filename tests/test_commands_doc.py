"""docs/commands.md is what the bot registers with Discord: regenerated from the real command
tree (the real cogs, no connection), it must be identical to the committed file."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path

import pytest

from bot.cli.commands_doc import REGENERATE, audience, registered_commands, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "commands.md"


@pytest.fixture(scope="module")
def commands() -> list[dict]:
    return asyncio.run(registered_commands())


def test_the_committed_reference_matches_the_command_tree(commands: list[dict]) -> None:
    generated = render(commands)
    committed = DOC.read_text(encoding="utf-8")
    if generated != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                generated.splitlines(keepends=True),
                "docs/commands.md (committed)",
                "docs/commands.md (from the commands now)",
                n=1,
            )
        )
        pytest.fail(
            f"docs/commands.md is out of date; regenerate it with:\n    {REGENERATE}\n\n{diff}",
            pytrace=False,
        )


def test_the_reference_names_every_command_option_and_audience(commands: list[dict]) -> None:
    doc = render(commands)
    assert "| `/quota report` | admins | A chart of the Buzz spent per day by model |" in doc
    assert "| `days` | whole number | no | How many days back, today included" in doc
    assert "| 1–90 |" in doc
    assert "| `/mod ban` | moderators |" in doc
    assert "| `/imagine` | members |" in doc
    assert "| message menu **Edit image** | members | |" in doc
    assert "### Message menu: Edit image" in doc and "User menus: none." in doc
    assert "`none`, `daily`, `weekly`, `monthly`" in doc
    # Every subcommand of DESIGN.md's admin groups is there.
    for name in ("default", "role", "member", "grant", "take", "budget", "show", "export"):
        assert f"### /quota {name}\n" in doc, name


def test_a_command_for_an_unknown_audience_is_refused() -> None:
    odd = {"name": "odd", "type": 1, "default_member_permissions": str(1 << 3)}
    with pytest.raises(ValueError, match="/odd asks for permissions 8: say who that is"):
        audience(odd)
