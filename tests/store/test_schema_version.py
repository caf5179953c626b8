"""A database written by a newer bot is left alone; looking at a file never creates one."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.store.db import Database, SchemaTooNew, newest_schema
from bot.store.probe import DatabaseMissing, NotADatabase, check_schema, schema_version
from tests.store.test_db import worker_threads_after


def from_the_future(path: Path, version: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_version VALUES (?, ?, '2030-01-01')",
            (version, f"{version:03d}_future.sql"),
        )
    conn.close()


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    return [r[0] for r in found]


async def test_opening_a_newer_database_is_refused_and_changes_nothing(db_path: Path) -> None:
    async with Database(db_path):
        pass
    newer = newest_schema() + 1
    from_the_future(db_path, newer)
    before = tables(db_path)
    threads = set(threading.enumerate())

    with pytest.raises(SchemaTooNew) as refused:
        await Database(db_path).open()

    message = str(refused.value)
    assert f"the database at {db_path} was written by a newer version" in message
    assert f"schema {newer}, this code knows up to {newest_schema()}" in message
    assert "upgrade the bot or restore a backup" in message
    assert tables(db_path) == before
    assert worker_threads_after(threads) == []  # no connection left open behind it
    assert schema_version(db_path) == newer


async def test_the_probe_reads_the_version_without_creating_anything(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bot.sqlite3"
    with pytest.raises(DatabaseMissing, match="set BOT_DB_PATH or run from the bot's folder"):
        check_schema(path)
    assert not path.parent.exists()
    async with Database(path):
        pass
    assert check_schema(path) == newest_schema()
    from_the_future(path, 99)
    with pytest.raises(SchemaTooNew):
        check_schema(path)


def test_the_probe_names_a_file_sqlite_cannot_use(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"plain text, not a database " * 100)
    with pytest.raises(NotADatabase, match="not a database"):
        schema_version(junk)
    with pytest.raises(NotADatabase, match="folder"):
        schema_version(tmp_path)
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()  # a database the bot never opened
    assert schema_version(empty) == 0


async def test_a_damaged_version_is_not_taken_for_a_newer_bot(db_path: Path) -> None:
    """A page of the version table overwritten with junk reads as a huge number: that is a
    damaged database (restore a backup), not one from a newer bot (upgrade)."""
    async with Database(db_path):
        pass
    from_the_future(db_path, 6245747993460714411)
    with pytest.raises(NotADatabase, match="schema_version table is damaged"):
        check_schema(db_path)
