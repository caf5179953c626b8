"""Backups through SQLite's online backup API: consistent while the bot writes, never half a
file, and never over something the operator did not mean to overwrite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.store.backup import BackupRefused, backup
from bot.store.db import Database, newest_schema
from bot.store.ledger import Ledger
from bot.store.probe import DatabaseMissing, NotADatabase
from tests.store.conftest import GUILD


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll until check() holds; the timeout only guards against a hang."""
    for _ in range(2000):
        if await check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def assert_consistent_copy(path: Path) -> int:
    """The copy is sound and is the database as one commit left it; returns its entry count."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == (
            newest_schema()
        )
        drift = conn.execute(
            "SELECT a.member_id FROM accounts a JOIN (SELECT guild_id, member_id,"
            " SUM(delta_allowance) AS da, SUM(delta_grant) AS dg FROM ledger_entries"
            " GROUP BY guild_id, member_id) e USING (guild_id, member_id)"
            " WHERE a.allowance_balance != e.da OR a.grant_balance != e.dg"
        ).fetchall()
        assert drift == [], "cached balances differ from the entries in the copy"
        entries, last = conn.execute("SELECT COUNT(*), MAX(id) FROM ledger_entries").fetchone()
        audits = conn.execute(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'ledger.grant'"
        ).fetchone()[0]
        # Each grant wrote an entry and an audit row in one transaction: both or neither.
        assert audits == entries
        assert last == entries  # no gap: a prefix of the commits, not a mix
        return int(entries)
    finally:
        conn.close()


async def count_entries(db: Database) -> int:
    found = await db.fetchone("SELECT COUNT(*) FROM ledger_entries")
    assert found is not None
    return int(found[0])


async def test_a_backup_taken_while_the_bot_writes_is_one_consistent_state(
    db: Database, tmp_path: Path
) -> None:
    ledger = Ledger(db)
    stop = asyncio.Event()

    async def keep_granting() -> None:
        n = 0
        while not stop.is_set():
            await db.write(
                ledger.grant_in, GUILD, n % 7 + 1, n % 50 + 1, actor_id=None, reason=f"w{n}"
            )
            n += 1

    writer = asyncio.create_task(keep_granting())
    try:
        await eventually(lambda: _at_least(db, 100), "the writer got going")
        out = tmp_path / "backups" / "copy.sqlite3"
        out.parent.mkdir()
        # The copy runs on another thread while the writer keeps committing on its own.
        result = await asyncio.to_thread(backup, db.path, out)
        copied = assert_consistent_copy(out)
        await eventually(lambda: _at_least(db, copied + 100), "the writer went on after it")
    finally:
        stop.set()
        await writer
    assert copied >= 100
    assert result.path == out.absolute() and result.size == out.stat().st_size
    assert result.schema == newest_schema()
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.sqlite3"]  # nothing else
    # And the bot can run on it: a restored copy opens and answers.
    async with Database(out) as restored:
        balance = await Ledger(restored).balance(GUILD, 1)
        assert balance.available > 0


async def _at_least(db: Database, n: int) -> bool:
    return await count_entries(db) >= n


async def test_an_existing_file_is_only_overwritten_with_force(
    db: Database, tmp_path: Path
) -> None:
    await db.write(Ledger(db).grant_in, GUILD, 1, 5, actor_id=None, reason="x")
    out = tmp_path / "keep.sqlite3"
    out.write_bytes(b"an older backup the operator still wants")
    with pytest.raises(BackupRefused, match="already exists: use --force"):
        backup(db.path, out)
    assert out.read_bytes() == b"an older backup the operator still wants"
    backup(db.path, out, force=True)
    assert assert_consistent_copy(out) == 1


@pytest.mark.parametrize("force", [False, True])
async def test_the_database_itself_is_never_the_target(
    db: Database, tmp_path: Path, force: bool
) -> None:
    with pytest.raises(BackupRefused, match="the database itself"):
        backup(db.path, db.path.parent / ".." / db.path.parent.name / db.path.name, force=force)
    assert await count_entries(db) == 0  # still a working database


async def test_a_missing_folder_or_a_folder_as_target_is_refused(
    db: Database, tmp_path: Path
) -> None:
    with pytest.raises(BackupRefused, match="create it first"):
        backup(db.path, tmp_path / "no-such-folder" / "copy.sqlite3")
    assert not (tmp_path / "no-such-folder").exists()
    with pytest.raises(BackupRefused, match="is a folder"):
        backup(db.path, tmp_path)


def test_no_database_no_backup(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing, match="no database at"):
        backup(tmp_path / "data" / "bot.sqlite3", tmp_path / "copy.sqlite3")
    assert sorted(tmp_path.iterdir()) == []  # neither the database nor a copy was created


def test_a_file_that_is_not_a_database_leaves_no_partial_copy(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database " * 300)
    with pytest.raises(NotADatabase, match="not a database"):
        backup(junk, tmp_path / "copy.sqlite3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.sqlite3"]
