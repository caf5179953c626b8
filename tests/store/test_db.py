"""The database: migrations once, WAL, foreign keys, atomic and serialised transactions."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

import bot.store.db as dbmod
from bot.store.db import Database
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from tests.store.conftest import GUILD, Clock, account, new_job

EXTRA = (
    999,
    "999_test_extra.sql",
    "CREATE TABLE test_extra (n INTEGER);\nINSERT INTO test_extra VALUES (1);",
)


async def versions(db: Database) -> list[tuple[int, str]]:
    rows = await db.fetchall("SELECT version, name FROM schema_version ORDER BY version")
    return [(r[0], r[1]) for r in rows]


async def test_migrations_recorded_once_and_not_reapplied(db_path: Path) -> None:
    shipped = [(v, n) for v, n, _ in dbmod._migrations()]
    assert shipped and shipped[0] == (1, "001_initial.sql")
    async with Database(db_path) as db:
        assert await versions(db) == shipped
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO audit_events (action, created_at) VALUES ('kept', '2025-01-01')"
            )
    # Reopening must neither re-run 001 (it would fail: tables exist) nor lose data.
    async with Database(db_path) as db:
        assert await versions(db) == shipped
        row = await db.fetchone("SELECT COUNT(*) FROM audit_events WHERE action = 'kept'")
        assert row is not None and row[0] == 1


async def test_new_migration_applies_once_on_reopen(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Database(db_path):
        pass
    shipped = dbmod._migrations()
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*shipped, EXTRA])
    for _ in range(3):
        async with Database(db_path) as db:
            assert (999, "999_test_extra.sql") in await versions(db)
            row = await db.fetchone("SELECT COUNT(*) FROM test_extra")
            assert row is not None and row[0] == 1, "the migration ran more than once"


async def test_failing_migration_leaves_nothing_behind(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Database(db_path):
        pass
    broken = (
        998,
        "998_broken.sql",
        "CREATE TABLE half_done (n INTEGER);\nINSERT INTO no_such_table VALUES (1);",
    )
    shipped = dbmod._migrations()
    monkeypatch.setattr(dbmod, "_migrations", lambda: [*shipped, broken])
    with pytest.raises(sqlite3.OperationalError):
        await Database(db_path).open()
    monkeypatch.setattr(dbmod, "_migrations", lambda: shipped)
    async with Database(db_path) as db:
        assert 998 not in [v for v, _ in await versions(db)]
        row = await db.fetchone("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'")
        assert row is not None and row[0] == 0


def worker_threads_after(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started since `before` that are still alive after a moment to finish."""
    new = [t for t in threading.enumerate() if t not in before]
    for t in new:
        t.join(timeout=5)
    return [t for t in new if t.is_alive()]


async def test_failed_open_closes_its_connections(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leaked aiosqlite connection keeps a non-daemon thread: the bot would hang on exit."""
    async with Database(db_path):
        pass
    shipped = dbmod._migrations()
    monkeypatch.setattr(
        dbmod,
        "_migrations",
        lambda: [*shipped, (997, "997_bad.sql", "INSERT INTO nope VALUES (1);")],
    )
    before = set(threading.enumerate())
    database = Database(db_path)
    with pytest.raises(sqlite3.OperationalError):
        await database.open()
    assert worker_threads_after(before) == []


async def test_opening_a_file_that_is_not_a_database_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"not a database, just text " * 200)
    before = set(threading.enumerate())
    database = Database(path)
    with pytest.raises(sqlite3.DatabaseError):
        await database.open()
    assert worker_threads_after(before) == []


async def test_wal_and_foreign_keys_on_both_connections(db: Database) -> None:
    row = await db.fetchone("PRAGMA journal_mode")
    assert row is not None and row[0] == "wal"
    row = await db.fetchone("PRAGMA foreign_keys")
    assert row is not None and row[0] == 1
    async with db.transaction() as tx:
        async with tx.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1
        async with tx.execute("PRAGMA busy_timeout") as cur:
            assert (await cur.fetchone())[0] >= 1000
    assert (db.path.parent / (db.path.name + "-wal")).exists()


async def test_hold_for_missing_job_is_refused_by_foreign_key(db: Database) -> None:
    ledger = Ledger(db, default_allowance=1000, clock=Clock())
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        async with db.transaction() as tx:
            await ledger.hold(tx, GUILD, 1, "no-such-job", 100)
    # The whole transaction went, refill included.
    assert await account(db, 1) == (0, 0)
    row = await db.fetchone("SELECT COUNT(*) FROM ledger_entries")
    assert row is not None and row[0] == 0


async def test_failing_transaction_rolls_back_everything(db: Database) -> None:
    clock = Clock()
    jobs, ledger = JobStore(db, clock), Ledger(db, clock=clock)
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as tx:
            await jobs.insert(tx, new_job("j1"))
            await ledger.grant(tx, GUILD, 1, 500, actor_id=9, reason="x")
            await ledger.hold(tx, GUILD, 1, "j1", 200)
            raise RuntimeError("boom")
    for table in ("jobs", "job_events", "holds", "ledger_entries", "accounts", "audit_events"):
        row = await db.fetchone(f"SELECT COUNT(*) FROM {table}")
        assert row is not None and row[0] == 0, f"{table} kept rows of a rolled-back transaction"
    # The writer is usable again afterwards.
    async with db.transaction() as tx:
        await ledger.grant(tx, GUILD, 1, 5, actor_id=9, reason="x")
    assert await account(db, 1) == (0, 5)


async def test_reader_does_not_see_uncommitted_writes(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('x', 'now')")
        row = await db.fetchone("SELECT COUNT(*) FROM audit_events")
        assert row is not None and row[0] == 0
    row = await db.fetchone("SELECT COUNT(*) FROM audit_events")
    assert row is not None and row[0] == 1


async def test_concurrent_transactions_do_not_interleave(db: Database) -> None:
    log: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        async with db.transaction() as tx:
            for step in range(5):
                log.append((name, step))
                await tx.execute(
                    "INSERT INTO audit_events (action, target, created_at) VALUES (?, ?, 'now')",
                    (name, str(step)),
                )
                await asyncio.sleep(0)

    await asyncio.gather(*(worker(f"t{i}") for i in range(4)))
    # Each task's five steps are contiguous, both in program order and in the table.
    names = [name for name, _ in log]
    runs = [names[i] for i in range(0, len(names), 5)]
    assert names == [n for n in runs for _ in range(5)]
    rows = await db.fetchall("SELECT action FROM audit_events ORDER BY id")
    assert [r[0] for r in rows] == names


async def test_second_process_waits_instead_of_failing(db: Database) -> None:
    """Another connection (the CLI) writing while the bot holds a transaction waits its turn."""
    other = Database(db.path)
    await other.open()
    try:
        order: list[str] = []

        async def bot_side() -> None:
            async with db.transaction() as tx:
                order.append("bot begins")
                await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('a', 'n')")
                await asyncio.sleep(0.2)
                order.append("bot commits")

        async def cli_side() -> None:
            await asyncio.sleep(0.05)
            async with other.transaction() as tx:
                order.append("cli begins")
                await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('b', 'n')")

        await asyncio.gather(bot_side(), cli_side())
        assert order == ["bot begins", "bot commits", "cli begins"]
    finally:
        await other.close()


async def count_actions(db: Database) -> list[str]:
    rows = await db.fetchall("SELECT action FROM audit_events ORDER BY id")
    return [r[0] for r in rows]


async def test_cancelled_inside_a_transaction_rolls_back(db: Database) -> None:
    inside = asyncio.Event()

    async def victim() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('v', 'n')")
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(victim())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('after', 'n')")
    assert await count_actions(db) == ["after"]


async def test_cancelled_while_waiting_for_another_process_leaves_the_writer_usable(
    db: Database,
) -> None:
    """Cancelled during BEGIN IMMEDIATE (the CLI holds the lock): later writes still work."""
    other = await Database(db.path).open()
    try:
        entered = asyncio.Event()

        async def cli_side() -> None:
            async with other.transaction() as tx:
                await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('c', 'n')")
                entered.set()
                await asyncio.sleep(0.3)

        async def victim() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('v', 'n')")

        cli = asyncio.create_task(cli_side())
        await entered.wait()
        task = asyncio.create_task(victim())
        await asyncio.sleep(0.1)  # the victim now waits in BEGIN IMMEDIATE on the busy timeout
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cli
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('after', 'n')")
        assert await count_actions(db) == ["c", "after"]
        # And the other process can still write too: nobody holds a stray transaction.
        async with other.transaction() as tx:
            await tx.execute("INSERT INTO audit_events (action, created_at) VALUES ('c2', 'n')")
    finally:
        await other.close()


async def test_reads_under_heavy_concurrency_see_every_committed_write(tmp_path):
    """Overlapping cursors on the shared reader once pinned an old snapshot: a row committed
    a moment ago read as missing while hundreds of other reads were in flight."""
    async with Database(tmp_path / "busy.sqlite3") as db:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        stop = asyncio.Event()

        async def background_reader() -> None:
            while not stop.is_set():
                await db.fetchall("SELECT * FROM t")

        readers = [asyncio.create_task(background_reader()) for _ in range(100)]
        try:
            for i in range(100):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t (id) VALUES (?)", (i,))
                row = await db.fetchone("SELECT id FROM t WHERE id = ?", (i,))
                assert row is not None, f"row {i} was committed but reads as missing"
        finally:
            stop.set()
            await asyncio.gather(*readers)
