"""SQLite through aiosqlite: WAL, foreign keys, busy timeout, numbered migrations.

One writer connection serialised by an asyncio lock: every state-and-money change runs inside
`async with db.transaction() as tx:` (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error), so
concurrent tasks never interleave inside each other's transactions and other processes (the
CLI) wait on the busy timeout instead of failing. Plain reads use a second connection: WAL lets
them run beside a writer and they never see uncommitted state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

Row = aiosqlite.Row


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


class Database:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> Database:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect()
            await self._migrate()
            self._reader = await self._connect()
        except BaseException:
            # An open aiosqlite connection keeps a non-daemon thread: the process would hang.
            await self.close()
            raise
        return self

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT on the writer; ROLLBACK if the block raises."""
        assert self._writer is not None, "database is not open"
        async with self._lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except asyncio.CancelledError:
                # The BEGIN still runs on the connection's thread (it may be waiting on another
                # process's lock). A ROLLBACK queued behind it undoes it; without one the writer
                # would stay inside a transaction nobody ends and every later write would fail.
                with contextlib.suppress(sqlite3.Error):
                    await self._writer.execute("ROLLBACK")
                raise
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        assert self._reader is not None, "database is not open"
        return await fetchall(self._reader, sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        assert self._reader is not None, "database is not open"
        return await fetchone(self._reader, sql, params)

    async def _migrate(self) -> None:
        assert self._writer is not None
        conn = self._writer
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with conn.execute("SELECT version FROM schema_version") as cursor:
            applied = {row[0] for row in await cursor.fetchall()}
        for version, name, sql in _migrations():
            if version in applied:
                continue
            log.info("applying migration %s", name)
            # executescript commits first; run the whole file and its record atomically.
            try:
                record = (
                    f"INSERT INTO schema_version VALUES ({version}, '{name}', '{iso(utcnow())}');"
                )
                await conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n{record}\nCOMMIT;")
            except Exception:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bot.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def fetchall(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    """Run a query to completion in one step on the connection's thread.

    A statement left open (a cursor not yet exhausted while other tasks use the connection)
    keeps SQLite's read transaction open, and every later read on that connection would see
    that old snapshot. One call per query means statements never overlap.
    """
    return list(await conn.execute_fetchall(sql, tuple(params)))


async def fetchone(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Row | None:
    """The first row (see fetchall); inside a transaction it sees its own writes."""
    rows = await fetchall(conn, sql, params)
    return rows[0] if rows else None
