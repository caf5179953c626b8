"""SQLite: WAL, foreign keys, busy timeout, numbered migrations, one writer.

Every state-and-money change is a plain function of a sqlite3 connection, run whole on the
writer connection's own thread by `await db.write(fn, ...)`: BEGIN IMMEDIATE, fn, COMMIT (or
ROLLBACK if fn raises). One thread hand-off per transaction instead of one per statement
(each hand-off costs ~200 µs here, a whole transaction's SQL ~30 µs), and since the writer
thread runs one function at a time, transactions cannot interleave — no lock, no await inside a
transaction, and a cancelled caller can never leave one half-open. Other processes (the CLI)
wait on the busy timeout. `db.read(fn)` gives a multi-statement read one consistent snapshot on
a reader connection of the same kind; WAL lets reads run beside a writer.

aiosqlite has no public way to run a function on its connection's thread, so the writer and the
snapshot reader are `SerialConnection`s (bot/store/serial.py); single-statement reads
(`fetchall`, `fetchone`) go through aiosqlite's public API on a connection of their own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.store import replaced as swap
from bot.store.serial import ConnectionClosed, SerialConnection

log = logging.getLogger(__name__)

# SQLite's largest integer: every Discord id fits; a larger number given to a query ends in an
# OverflowError.
MAX_INTEGER = 2**63 - 1

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


class DatabaseProblem(Exception):
    """The database file cannot be used as it is; the message names it and what to do."""


class StoreBusy(sqlite3.OperationalError):
    """A write could not be made for now: another process holds the write lock past the busy
    timeout, the disk is full, or it takes no writes (read-only, failing). Nothing of the
    transaction was kept; trying later works once the operator has seen to it. `reason` is
    one of REFUSALS."""

    def __init__(self, message: str, reason: str = "busy") -> None:
        super().__init__(message)
        self.reason = reason


REFUSALS = ("busy", "full", "unwritable", "replaced")


def store_busy(exc: sqlite3.OperationalError) -> StoreBusy | None:
    """The error as a StoreBusy when it is one of those passing conditions, else None."""
    if isinstance(exc, StoreBusy):
        return exc
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreBusy("the database is busy (another process holds its write lock)")
    if name.startswith("SQLITE_FULL"):
        return StoreBusy("the database cannot be written (the disk is full)", "full")
    # A disk remounted read-only after errors, a file the bot may no longer write.
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        why = "is its file or disk read-only"
    elif name.startswith("SQLITE_IOERR"):
        why = "is its disk read-only or failing"
    else:
        return None
    return StoreBusy(f"the database cannot be written ({exc}; {why})", "unwritable")


class SchemaTooNew(DatabaseProblem):
    """The database was written by a newer version of the bot than this code."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        self.path, self.found, self.known = path, found, known
        super().__init__(
            f"the database at {path.absolute()} was written by a newer version of the bot"
            f" (schema {found}, this code knows up to {known}); upgrade the bot or restore a"
            " backup"
        )


class NotOurDatabase(DatabaseProblem):
    """A SQLite file with tables but none of the bot's: another program's database."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"cannot use the database at {path.absolute()}: it is not the bot's database (it"
            " holds another program's tables); check BOT_DB_PATH"
        )


# Any table, index or view: a file that has one but no schema_version is not the bot's.
ANY_OBJECT = "SELECT 1 FROM sqlite_master WHERE name NOT LIKE 'sqlite%' LIMIT 1"


class SchemaTooOld(DatabaseProblem):
    """The database needs migrations this code has: only the bot's start applies them."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        self.path, self.found, self.known = path, found, known
        super().__init__(
            f"the database at {path.absolute()} is from an older version of the bot"
            f" (schema {found}, this code needs {known}): start the new bot once"
            " (python -m bot run) to upgrade it, then run this again"
        )


class Database:
    """`migrate=False` (the CLI): never change the schema, SchemaTooOld if it is behind — an
    old bot may still be running on it. `checkpoint=False` (the CLI): leave the WAL to the bot
    on close; a TRUNCATE checkpoint holds the write lock while it waits for the bot's readers."""

    def __init__(
        self,
        path: Path | str,
        *,
        migrate: bool = True,
        checkpoint: bool = True,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.migrate, self.checkpoint = migrate, checkpoint
        # Told each write refused as StoreBusy, with its reason (the bot's metrics).
        self.on_refused = on_refused
        self._writer: SerialConnection | None = None
        self._snapshots: SerialConnection | None = None
        self._reader: aiosqlite.Connection | None = None
        # The file opened (device, inode), and how its path changed since (store/replaced.py).
        self._opened: swap.Identity | None = None
        self._replaced: str | None = None
        # Where the replaced file's contents were saved (None: not replaced, or not saved).
        self.orphan: Path | None = None

    async def open(self) -> Database:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # New threads on every open: a closed Database can be opened again.
        self._writer = SerialConnection("db-writer")
        self._snapshots = SerialConnection("db-reader")
        try:
            await self._writer.open(self._connect)
            if str(self.path) != ":memory:":
                self._opened, self._replaced = swap.identity(self.path), None
            await self._writer.run(_migrate, self.path, self.migrate)
            await self._snapshots.open(self._connect)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = sqlite3.Row
            for pragma in _pragmas():
                await self._reader.execute(pragma)
        except BaseException:
            # An open aiosqlite connection keeps a non-daemon thread: the process would hang.
            await self.close()
            raise
        return self

    async def close(self) -> None:
        if self._writer is not None and self.checkpoint and str(self.path) != ":memory:":
            # Fold the WAL into the database file: a stopped bot leaves one file to copy.
            try:
                await self._writer.run(_checkpoint)
            except ConnectionClosed:
                pass  # never opened (a failed open closes what it started)
            except sqlite3.Error as exc:
                log.warning("could not checkpoint %s on close: %s", self.path, exc)
        reader, self._reader = self._reader, None
        serial = [self._snapshots, self._writer]
        self._snapshots = self._writer = None
        try:
            if reader is not None:
                await reader.close()
        finally:
            for conn in serial:
                if conn is not None:
                    await conn.close()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connect(self) -> Conn:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            for pragma in _pragmas():
                conn.execute(pragma)
        except BaseException:
            conn.close()
            raise
        return conn

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, *args, **kwargs) as one BEGIN IMMEDIATE … COMMIT transaction."""
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                "db.write runs a plain function on the database thread, not a coroutine"
            )
        if self._writer is None:
            raise ConnectionClosed("database is not open")
        if self._opened is not None:
            await self._refuse_if_replaced(self._writer)
        try:
            return await self._writer.run(_transaction, fn, args, kwargs)
        except sqlite3.OperationalError as exc:
            busy = store_busy(exc)
            if busy is None:
                raise
            if self.on_refused is not None:
                self.on_refused(busy.reason)
            raise busy from exc

    @property
    def replaced(self) -> str | None:
        """What the operator must know once the database file was found replaced or deleted
        under the open database (every write is refused from then on); else None."""
        if self._replaced is None:
            return None
        return f"the database file {self.path} was {self._replaced} while the bot ran"

    async def file_changed(self) -> str | None:
        """Look now (the heartbeat does, an idle bot writes nothing); `replaced` after."""
        if self._writer is not None and self._opened is not None and self._replaced is None:
            await self._look(self._writer, self._opened)
        return self.replaced

    async def _look(self, writer: SerialConnection, opened: swap.Identity) -> None:
        how = swap.change(self.path, opened)
        if how is not None:
            self._replaced = how  # before the copy: a write meanwhile is refused, not copied
            self.orphan = await writer.run(swap.save_orphan, self.path, how)

    async def _refuse_if_replaced(self, writer: SerialConnection) -> None:
        """A stat per write (microseconds, against the ~200 µs a write costs anyway)."""
        assert self._opened is not None
        if self._replaced is None:
            await self._look(writer, self._opened)
            if self._replaced is None:
                return
        if self.on_refused is not None:
            self.on_refused("replaced")
        raise StoreBusy(
            f"the database file was {self._replaced} under the running bot: writes refused "
            "until it is restarted (see the error logged when it was found)",
            "replaced",
        )

    async def wait_writable(
        self,
        retry: float = 5.0,
        stopping: Callable[[], bool] = lambda: False,
        waiting: Callable[[str], Awaitable[None]] | None = None,
    ) -> bool:
        """Until a write transaction can begin (True), or `stopping()` (False). A start that
        meets another process's write lock (an operator's sqlite3 shell, a long backup) or a
        full disk waits, saying why (in the log, and to `waiting`: the heartbeat), instead of
        failing half-way through setting up."""
        while not stopping():
            try:
                await self.write(_nothing)
                return True
            except StoreBusy as exc:
                log.warning("waiting to start: %s; trying again in %.0fs", exc, retry)
                if waiting is not None:
                    await waiting(str(exc))
                await asyncio.sleep(retry)
        return False

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, ...) on a reader inside one read transaction (one snapshot)."""
        if self._snapshots is None:
            raise ConnectionClosed("database is not open")
        return await self._snapshots.run(_snapshot, fn, args, kwargs)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        if self._reader is None:
            raise ConnectionClosed("database is not open")
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        found = await self.fetchall(sql, params)
        return found[0] if found else None


def _pragmas() -> list[str]:
    return [
        f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA foreign_keys = ON",
        # Checkpoint (and fsync) every ~40 MB of WAL rather than every ~4 MB: fewer commits
        # pay for one (bench/ledger.py: about +10 % hold+settle throughput here).
        "PRAGMA wal_autocheckpoint = 10000",
    ]


def _nothing(conn: Conn) -> None:
    """A write transaction's lock taken and given back (wait_writable)."""


def _transaction(conn: Conn, fn: Callable[..., T], args: tuple[Any, ...], kwargs: Any) -> T:
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


def _snapshot(conn: Conn, fn: Callable[..., T], args: tuple[Any, ...], kwargs: Any) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn, *args, **kwargs)
    finally:
        conn.execute("COMMIT")


def _checkpoint(conn: Conn) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def newest_schema() -> int:
    """The newest migration this code knows."""
    return max(version for version, _, _ in _migrations())


def _migrate(conn: Conn, path: Path, apply: bool = True) -> None:
    has_table = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    if row(conn, has_table) is None:
        if row(conn, ANY_OBJECT) is not None:  # never add the bot's tables to another's file
            raise NotOurDatabase(path)
        if not apply:  # not even the first migration: nothing to read
            raise SchemaTooOld(path, 0, newest_schema())
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    applied = {r[0] for r in rows(conn, "SELECT version FROM schema_version")}
    migrations = _migrations()
    known = max((version for version, _, _ in migrations), default=0)
    if applied and max(applied) > known:
        # Older code would misread (or "repair") tables it does not know: touch nothing.
        raise SchemaTooNew(path, max(applied), known)
    if not apply and not {version for version, _, _ in migrations} <= applied:
        raise SchemaTooOld(path, max(applied, default=0), known)
    for version, name, sql in migrations:
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
