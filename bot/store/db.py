"""SQLite through aiosqlite: WAL, foreign keys, busy timeout, numbered migrations.

Every state-and-money change is a plain function of a sqlite3 connection, run whole on the
writer connection's own thread by `await db.write(fn, ...)`: BEGIN IMMEDIATE, fn, COMMIT (or
ROLLBACK if fn raises). One thread hand-off per transaction instead of one per statement
(each hand-off costs ~200 µs here, a whole transaction's SQL ~30 µs), and since the writer
thread runs one function at a time, transactions cannot interleave — no lock, no await inside a
transaction, and a cancelled caller can never leave one half-open. Other processes (the CLI)
wait on the busy timeout. Reads use a second connection: WAL lets them run beside a writer, and
`db.read(fn)` gives a multi-statement read one consistent snapshot.
"""

from __future__ import annotations

import inspect
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

Row = sqlite3.Row
Conn = sqlite3.Connection
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def rows(conn: Conn, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    return conn.execute(sql, tuple(params)).fetchall()


def row(conn: Conn, sql: str, params: Iterable[Any] = ()) -> Row | None:
    return conn.execute(sql, tuple(params)).fetchone()


def scalar(conn: Conn, sql: str, params: Iterable[Any] = ()) -> Any:
    found = conn.execute(sql, tuple(params)).fetchone()
    return found[0] if found else None


class Database:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    async def open(self) -> Database:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect()
            await _on_thread(self._writer, _migrate)
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
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            # Checkpoint (and fsync) every ~40 MB of WAL rather than every ~4 MB: fewer commits
            # pay for one (bench/ledger.py: about +10 % hold+settle throughput here).
            await conn.execute("PRAGMA wal_autocheckpoint = 10000")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, *args, **kwargs) as one BEGIN IMMEDIATE … COMMIT transaction."""
        assert self._writer is not None, "database is not open"
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                "db.write runs a plain function on the database thread, not a coroutine"
            )

        def transaction(conn: Conn) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args, **kwargs)
                # A failed COMMIT (deferred constraint, disk full) leaves the transaction open:
                # roll it back too, or every later BEGIN on this connection would fail.
                conn.execute("COMMIT")
            except BaseException:
                # Some errors (SQLITE_FULL, IOERR, ...) already rolled back: do not mask them.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return await _on_thread(self._writer, transaction)

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, ...) on the reader inside one read transaction (one snapshot)."""
        assert self._reader is not None, "database is not open"

        def snapshot(conn: Conn) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn, *args, **kwargs)
            finally:
                conn.execute("COMMIT")

        return await _on_thread(self._reader, snapshot)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        assert self._reader is not None, "database is not open"
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        found = await self.fetchall(sql, params)
        return found[0] if found else None


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[[Conn], T]) -> T:
    """Run fn with the raw sqlite3 connection on that connection's own worker thread.

    aiosqlite keeps one thread per connection and runs every call there; `_execute` is how its
    own methods submit work. It is the one private name this project uses (pinned in
    pyproject.toml): it lets a whole transaction cross threads once.
    """
    return await conn._execute(lambda: fn(conn._conn))


def _migrate(conn: Conn) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied = {r[0] for r in rows(conn, "SELECT version FROM schema_version")}
    for version, name, sql in _migrations():
        if version in applied:
            continue
        log.info("applying migration %s", name)
        # executescript commits first; run the whole file and its record atomically.
        record = f"INSERT INTO schema_version VALUES ({version}, '{name}', '{iso(utcnow())}');"
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n{record}\nCOMMIT;")
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bot.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)
