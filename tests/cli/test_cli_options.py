"""The command line's own manners: --version, --config anywhere, ledger take, fixed choices."""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bot.cli import build_parser, jobs_cmd, main
from tests.cli.test_ops_cli import refused_with, run_all
from tests.cli.test_quote import ROOT, clean_env


def test_version_comes_from_the_package_metadata() -> None:
    (done,) = run_all([["--version"]], clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"python -m bot {metadata.version('civitai-image-bot')}"


def test_config_is_accepted_before_and_after_the_subcommand(tmp_path: Path) -> None:
    db = tmp_path / "from-config.sqlite3"
    config = tmp_path / "bot.toml"
    config.write_text(f'[database]\npath = "{db}"\n', encoding="utf-8")
    env = clean_env()  # no BOT_DB_PATH: only the file says where the database is
    (grant,) = run_all(
        [["ledger", "grant", "10", "20", "300", "--reason", "prize", "--config", str(config)]],
        env,
        cwd=tmp_path,
    )
    assert grant.returncode == 0, grant.stderr
    assert db.exists() and not (tmp_path / "data").exists()
    after, before, nested_first = run_all(
        [
            ["ledger", "balance", "10", "20", "--config", str(config), "--json"],
            ["--config", str(config), "ledger", "balance", "10", "20", "--json"],
            ["ledger", "--config", str(config), "balance", "10", "20", "--json"],
        ],
        env,
        cwd=tmp_path,
    )
    for done in (after, before, nested_first):
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["available"] == 300
    # It is really read there: a missing file named after the subcommand is an error.
    (missing,) = run_all([["jobs", "--config", str(tmp_path / "nope.toml")]], env, cwd=tmp_path)
    refused_with(missing, f"config file {tmp_path / 'nope.toml'} does not exist")


def ledger_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        found = conn.execute(
            "SELECT kind, amount, delta_allowance + delta_grant, reason FROM ledger_entries"
            " ORDER BY id"
        ).fetchall()
    conn.close()
    return found


def test_ledger_take_removes_buzz_and_never_goes_below_zero(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite3"
    env = clean_env(BOT_DB_PATH=str(db))
    (grant,) = run_all([["ledger", "grant", "1", "2", "100", "--reason", "welcome"]], env)
    assert grant.returncode == 0, grant.stderr

    (take,) = run_all([["ledger", "take", "1", "2", "30", "--reason", "duplicate grant"]], env)
    assert take.returncode == 0, take.stderr
    assert take.stdout.strip() == "took 30 Buzz; balance now 70"

    too_much, zero = run_all(
        [
            ["ledger", "take", "1", "2", "500", "--reason", "oops"],
            ["ledger", "take", "1", "2", "0", "--reason", "oops"],
        ],
        env,
    )
    refused_with(too_much, "cannot take 500 Buzz: the member has 70 available")
    refused_with(zero, "1 to 10,000,000")
    assert ledger_rows(db) == [
        ("grant", 100, 100, "welcome"),
        ("adjust", 30, -30, "duplicate grant"),
    ]
    (balance,) = run_all([["ledger", "balance", "1", "2", "--json"]], env)
    assert json.loads(balance.stdout)["available"] == 70
    with sqlite3.connect(db) as conn:
        audit = conn.execute(
            "SELECT target FROM audit_events WHERE action = 'ledger.take'"
        ).fetchall()
    conn.close()
    assert audit == [("member:2",)]


def test_fixed_sets_are_choices_and_case_does_not_matter() -> None:
    bad, upper = run_all(
        [
            ["quote", "gpt-image-1", "--quality", "ultra"],
            ["quote", "gpt-image-1", "--quality", "HIGH", "--format", "PNG", "--json"],
        ],
        clean_env(),
    )
    assert bad.returncode == 2
    assert "invalid choice: 'ultra'" in bad.stderr and "'medium'" in bad.stderr
    assert upper.returncode == 0, upper.stderr
    step = json.loads(upper.stdout)["step"]["input"]
    assert (step["quality"], step["outputFormat"]) == ("high", "png")


def subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += subcommands(sub)
    return found


def test_every_option_of_every_command_says_what_it_is_for() -> None:
    undocumented = [
        f"{parser.prog} {action.dest}"
        for parser in subcommands(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--port", "99999"], "99999 is not a port (0-65535)"),
        (["--speed", "0"], "0 must be above 0"),
        (["--script", "/no/such/script.json"], "--script /no/such/script.json: No such file"),
    ],
)
def test_the_simulator_refuses_bad_arguments_in_one_line(args: list[str], said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "simulator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert said in done.stderr


def test_an_unexpected_error_is_one_redacted_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bug escaping a command (here jobs, made to fail with the token in its message, as an
    HTTP client's error may carry a header) is reported through the log redaction: exit 1,
    the traceback kept for the report, never the token in clear."""
    token = "MTA5ODc2NTQzMjEwOTg3NjU0.Gabcde.secret-token-value-xyz"
    monkeypatch.setenv("DISCORD_TOKEN", token)
    monkeypatch.setenv("BOT_DB_PATH", str(tmp_path / "bot.sqlite3"))

    def broken(args: object) -> int:
        raise RuntimeError(f"request failed: Authorization: Bot {token}")

    monkeypatch.setattr(jobs_cmd, "run", broken)
    root = logging.getLogger()
    handlers = root.handlers[:]
    try:
        assert main(["jobs"]) == 1
    finally:  # the report set the process's log handler: leave the next test its own
        root.handlers[:] = handlers
    err = capsys.readouterr().err
    assert token not in err
    assert "jobs stopped by an unexpected error" in err
    assert "Traceback" in err and "RuntimeError: request failed: Authorization: Bot ***" in err
