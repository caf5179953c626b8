"""Commands beside a live database: a read never migrates the schema or checkpoints under the
running bot, and one lock guards a database however its path is written — each run as a real
`python -m bot` process on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli.run_cmd import hold_instance_lock
from bot.store.db import _migrations, iso, newest_schema, utcnow
from tests.cli.test_ops_cli import _create, refused_with, run_all
from tests.cli.test_quote import ROOT, bot, clean_env


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


LIVE_BOT = """
import sqlite3, sys, time
from pathlib import Path
from bot.store.state import BotState

path, stop = sys.argv[1], Path(sys.argv[2])
state = BotState(None)  # only its in-transaction method, on our own connection
# The running bot in miniature: a writer that must never wait (busy timeout 0, so a write
# held up by another process shows as SQLITE_BUSY) and a reader still on an older snapshot.
writer = sqlite3.connect(path, isolation_level=None, timeout=0)
reader = sqlite3.connect(path, isolation_level=None)
def write(n):
    writer.execute("BEGIN IMMEDIATE")
    state.set_in(writer, "probe", str(n))
    writer.execute("COMMIT")
write(0)
reader.execute("BEGIN")
reader.execute("SELECT COUNT(*) FROM bot_state").fetchone()
write(1)
print("ready", flush=True)
n, refused = 2, 0
while not stop.exists():
    try:
        write(n)
    except sqlite3.OperationalError:
        refused += 1
        if writer.in_transaction:
            writer.execute("ROLLBACK")
    n += 1
    time.sleep(0.005)
print(n, refused, flush=True)
"""


def test_a_read_only_command_never_holds_up_the_running_bots_writes(tmp_path: Path) -> None:
    """A command's close used to run a TRUNCATE checkpoint: it takes the write lock and waits
    (up to the busy timeout) for the bot's readers, and the bot's writes wait all that time."""
    path = tmp_path / "bot.sqlite3"
    asyncio.run(_create(path))
    stop = tmp_path / "stop"
    env = clean_env(BOT_DB_PATH=str(path))
    live = subprocess.Popen(
        [sys.executable, "-c", LIVE_BOT, str(path), str(stop)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None
        assert live.stdout.readline().strip() == "ready"
        wal = path.with_name(path.name + "-wal")
        before = wal.read_bytes()
        done = run_all(
            [["jobs"], ["ledger", "balance", "1", "2"], ["audit"], ["prune", "--dry-run"]], env
        )
        # The WAL is the bot's to fold back: the commands left it as they found it (bar the
        # bot's own new frames).
        after = wal.read_bytes()
        stop.touch()
        out, _ = live.communicate(timeout=60)
    finally:
        live.kill()
        live.wait(timeout=30)
    for command in done:
        assert command.returncode == 0, (command.args, command.stderr)
        assert "checkpoint" not in command.stderr, command.stderr
    writes, refused = map(int, out.split())
    assert writes > 2
    assert refused == 0  # no write of the bot's was held up
    assert after[: len(before)] == before


def test_one_lock_per_database_file_through_a_symlink_or_another_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bots on one file would both resume every job: post twice, settle twice."""
    real = tmp_path / "data" / "bot.sqlite3"
    asyncio.run(_create(real))
    link = tmp_path / "bot.sqlite3"
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path)
    for spelling in (link, Path("data/../data/bot.sqlite3"), Path("bot.sqlite3")):
        with hold_instance_lock(spelling):
            result = bot("run", env=clean_env(BOT_DB_PATH=str(real), DISCORD_TOKEN="x" * 40))
        assert result.returncode == 2, (spelling, result.stderr)
        assert f"another bot is already running on {real}" in result.stderr
