"""Commands beside a live database: a read never migrates the schema or checkpoints under the
running bot, and one lock guards a database however its path is written — each run as a real
`python -m bot` process on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.store.db import _migrations, iso, newest_schema, utcnow
from tests.cli.test_ops_cli import refused_with, run_all
from tests.cli.test_quote import clean_env


def make_older(path: Path) -> int:
    """A database as the previous release left it: every migration but the newest."""
    older = [m for m in _migrations() if m[0] < newest_schema()]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for version, name, sql in older:
            conn.executescript(sql)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)", (version, name, iso(utcnow()))
            )
    finally:
        conn.close()
    return older[-1][0]


def schema_of(path: Path) -> int:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def test_no_command_but_run_migrates_a_database_the_old_bot_may_still_be_using(
    tmp_path: Path,
) -> None:
    """Upgraded in place while the old bot runs: a look at the ledger must not move the schema
    under the old process (which could then never be started again)."""
    path = tmp_path / "bot.sqlite3"
    old = make_older(path)
    env = clean_env(BOT_DB_PATH=str(path))
    commands = [
        ["jobs"],
        ["jobs", "--active", "--json"],
        ["ledger", "balance", "1", "2"],
        ["ledger", "history", "1", "2"],
        ["ledger", "export", "1"],
        ["audit"],
        ["openai-models"],
        ["prune", "--dry-run"],
        ["prune"],
        ["ledger", "grant", "1", "2", "50", "--reason", "x"],
    ]
    expected = (
        f"the database at {path} is from an older version of the bot (schema {old}, this code"
        f" needs {newest_schema()}): start the new bot once (python -m bot run) to upgrade it,"
        " then run this again"
    )
    for done in run_all(commands, env):
        refused_with(done, expected)
    assert schema_of(path) == old

    # A backup copies it as it is (what an operator wants before the upgrade).
    (backup,) = run_all([["backup", str(tmp_path / "copy.sqlite3")]], env)
    assert backup.returncode == 0, backup.stderr
    assert f"schema: {old} (older than this bot: its next start upgrades it)" in backup.stdout
    assert schema_of(path) == old == schema_of(tmp_path / "copy.sqlite3")
