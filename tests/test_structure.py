"""The house rules that a reader relies on, checked: SQL lives in bot/store, no module grows
past what a reader takes in at once, and the core never imports the Discord front end."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = [*sorted((ROOT / "bot").rglob("*.py")), *sorted((ROOT / "cogs").rglob("*.py"))]
SQL = re.compile(
    r"^\s*(SELECT\b.+\bFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|"
    r"DELETE\s+FROM\b|(CREATE|ALTER|DROP)\s+(TABLE|INDEX|UNIQUE)\b|PRAGMA\s+\w+)",
    re.I | re.S,
)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            found.append("".join(v.value for v in node.values if isinstance(v, ast.Constant)))
    return found


def test_sql_lives_only_in_bot_store():
    offenders = []
    for path in CODE:
        name = rel(path)
        if name.startswith("bot/store/"):
            continue
        offenders += [f"{name}: {s[:60]!r}" for s in strings(path) if SQL.match(s)]
    assert offenders == []


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_discord_is_imported_only_by_the_adapter_package_and_the_cogs():
    offenders = [
        rel(path)
        for path in CODE
        if rel(path).startswith("bot/")
        and not rel(path).startswith("bot/discord_adapter/")
        and any(m == "discord" or m.startswith("discord.") for m in imported_modules(path))
    ]
    assert offenders == []


def test_the_core_never_imports_the_cogs():
    offenders = [
        rel(path)
        for path in CODE
        if rel(path).startswith("bot/")
        and any(m == "cogs" or m.startswith("cogs.") for m in imported_modules(path))
    ]
    assert offenders == []


def test_no_module_is_past_easy_reading():
    long = {rel(p): n for p in CODE if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


def test_one_place_builds_the_engine():
    """Services.engine() is the builder: nothing else in bot/ constructs an Engine."""
    builders = [
        rel(path)
        for path in CODE
        if "Engine(" in path.read_text() and rel(path) not in {"bot/services.py"}
    ]
    assert builders == []


def test_the_engine_is_lane_agnostic():
    """The engine, the stores and the Discord front end know lanes only by their interface."""
    offenders = [
        rel(path)
        for path in CODE
        if rel(path).startswith(("bot/engine/", "bot/store/", "bot/discord_adapter/"))
        and any(m.startswith(("bot.civitai", "bot.openai_api")) for m in imported_modules(path))
    ]
    assert offenders == []
