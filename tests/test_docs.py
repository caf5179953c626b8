"""What the operator docs tell people to type is what the code reads: every environment
variable they name is a setting, every commented example in config.example.toml is valid, the
example's values are the defaults (compose mounts it as the settings file), and every
`python -m bot …` command line they show parses."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.config import ENV_PREFIX, NAMED_ENV, TOP_LEVEL, Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"
# What an operator or admin reads and acts on.
OPERATOR_DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    EXAMPLE,
    ROOT / ".env.example",
    ROOT / "compose.yaml",
    ROOT / "Dockerfile",
]
# Read by the entry point (the settings file's path), not a setting itself.
NOT_SETTINGS = {"BOT_CONFIG"}
ENV_VAR = re.compile(r"\b(?:BOT|DISCORD|CIVITAI|OPENAI)_[A-Z0-9_]*[A-Z0-9]\b")
# Up to the end of a code span, a comment, or the prose around an inline mention.
COMMAND_LINE = re.compile(r"python -m bot((?:[ \t]+[^ \t\n`|#();,]+)*)")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith(("BOT_", "CIVITAI_", "DISCORD_", "OPENAI_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def setting_env_names() -> set[str]:
    names = set(NAMED_ENV) | {f"{ENV_PREFIX}{key.upper()}" for key in TOP_LEVEL}
    defaults = Settings()
    for section in defaults.sections():
        names |= {env_name(section, key) for key in type(getattr(defaults, section)).model_fields}
    return names


@pytest.mark.parametrize("doc", OPERATOR_DOCS, ids=lambda p: p.name)
def test_every_environment_variable_the_docs_name_is_read_by_settings(doc: Path) -> None:
    known = setting_env_names() | NOT_SETTINGS
    named = set(ENV_VAR.findall(doc.read_text(encoding="utf-8")))
    assert not named - known, f"{doc.name} names variables no setting reads: {named - known}"


def commented_examples() -> list[tuple[str | None, str, str]]:
    """(section, key, value) of each `# key = value` line of config.example.toml."""
    found, section = [], None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if header := re.match(r"^\[(\w+)\]", line):
            section = header.group(1)
        elif example := re.match(r"^# (\w+) = (.+)$", line):
            found.append((section, example.group(1), example.group(2)))
    return found


def test_the_example_config_has_commented_examples() -> None:
    keys = {(section, key) for section, key, _ in commented_examples()}
    assert {("discord", "token"), ("openai", "prices"), ("metrics", "port")} <= keys


@pytest.mark.parametrize(("section", "key", "value"), commented_examples())
def test_each_commented_example_value_is_valid(section: str | None, key: str, value: str) -> None:
    """Uncommenting an example must give a configuration the bot accepts."""
    text = (f"[{section}]\n" if section else "") + f"{key} = {value}\n"
    settings = Settings(**tomllib.loads(text))
    where = getattr(settings, section) if section else settings
    assert getattr(where, key) is not None


def test_the_example_config_values_are_the_defaults() -> None:
    """compose.yaml mounts config.example.toml when the operator has no config.toml, and the
    admin guide says so because its values are the defaults: it must change nothing."""
    example = Settings(**tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert example.model_dump() == Settings().model_dump()


def command_lines() -> list[tuple[str, str]]:
    lines = []
    for doc in OPERATOR_DOCS:
        for match in COMMAND_LINE.finditer(doc.read_text(encoding="utf-8")):
            if match.group(1).strip():
                lines.append((doc.name, match.group(0)))
    return lines


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_the_docs_show_command_lines() -> None:
    shown = {line.split()[3] for _, line in command_lines()}
    assert {"ledger", "jobs", "backup", "prune", "quote", "check-config", "audit"} <= shown


@pytest.mark.parametrize(("doc", "line"), command_lines())
def test_every_command_line_in_the_docs_names_real_commands_and_options(
    doc: str, line: str
) -> None:
    words = shlex.split(line.replace("[", " ").replace("]", " "), posix=True)[3:]
    parser = build_parser()
    if words[0].startswith("-"):
        assert words[0] in _options(parser), f"{doc}: {line}"
        return
    commands = _subcommands(parser)
    assert words[0] in commands, f"{doc}: no command {words[0]!r} in {line!r}"
    parser = commands[words[0]]
    actions = _subcommands(parser)
    if actions and len(words) > 1 and not words[1].startswith("-"):
        assert words[1] in actions, f"{doc}: no {words[0]} action {words[1]!r} in {line!r}"
        parser = actions[words[1]]
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in _options(parser), f"{doc}: no option {word} in {line!r}"


def test_every_docker_run_the_docs_show_waits_for_the_drain() -> None:
    """`docker stop` kills after 10 s unless told otherwise; on SIGTERM the bot waits up to
    jobs.shutdown_drain_seconds (20 s) for OpenAI calls under way, which a restart cannot pick
    up: killed before, a call is lost and made (and paid upstream) again. compose.yaml gives
    30 s; a `docker run` shown to operators must say so too."""
    drain = Settings().jobs.shutdown_drain_seconds
    runs = [
        (doc.name, line)
        for doc in OPERATOR_DOCS
        for line in doc.read_text(encoding="utf-8").splitlines()
        if re.search(r"\bdocker run\b", line) and "civitai-image-bot" in line
    ]
    assert runs, "the README shows how to run the image without compose"
    for name, line in runs:
        found = re.search(r"--stop-timeout[ =](\d+)", line)
        assert found and int(found.group(1)) > drain, f"{name}: {line}"
