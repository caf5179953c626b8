"""The database: migrations once, WAL, foreign keys, atomic and serialised transactions."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

import bot.store.db as dbmod
from bot.store.db import Conn, Database, scalar
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from tests.store.conftest import GUILD, Clock, account, new_job

EXTRA = (
    999,
    "999_test_extra.sql",
    "CREATE TABLE test_extra (n INTEGER);\nINSERT INTO test_extra VALUES (1);",
)


def record(tx: Conn, action: str) -> None:
    tx.execute("INSERT INTO audit_events (action, created_at) VALUES (?, 'n')", (action,))


async def actions(db: Database) -> list[str]:
    rows = await db.fetchall("SELECT action FROM audit_events ORDER BY id")
    return [r[0] for r in rows]


async def versions(db: Database) -> list[tuple[int, str]]:
    rows = await db.fetchall("SELECT version, name FROM schema_version ORDER BY version")
    return [(r[0], r[1]) for r in rows]


async def test_migrations_recorded_once_and_not_reapplied(db_path: Path) -> None:
    shipped = [(v, n) for v, n, _ in dbmod._migrations()]
    assert shipped and shipped[0] == (1, "001_initial.sql")
    async with Database(db_path) as db:
        assert await versions(db) == shipped
        await db.write(record, "kept")
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
    assert await db.read(scalar, "PRAGMA busy_timeout") >= 1000

    def pragmas(tx: Conn) -> tuple[int, int]:
        return scalar(tx, "PRAGMA foreign_keys"), scalar(tx, "PRAGMA busy_timeout")

    foreign_keys, busy_timeout = await db.write(pragmas)
    assert foreign_keys == 1
    assert busy_timeout >= 1000
    assert (db.path.parent / (db.path.name + "-wal")).exists()


async def test_hold_for_missing_job_is_refused_by_foreign_key(db: Database) -> None:
    ledger = Ledger(db, default_allowance=1000, clock=Clock())
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await db.write(ledger.place_hold_in, GUILD, 1, "no-such-job", 100)
    # The whole transaction went, refill included.
    assert await account(db, 1) == (0, 0)
    row = await db.fetchone("SELECT COUNT(*) FROM ledger_entries")
    assert row is not None and row[0] == 0


async def test_failing_transaction_rolls_back_everything(db: Database) -> None:
    clock = Clock()
    jobs, ledger = JobStore(db, clock), Ledger(db, clock=clock)

    def doomed(tx: Conn) -> None:
        jobs.insert_in(tx, new_job("j1"))
        ledger.grant_in(tx, GUILD, 1, 500, actor_id=9, reason="x")
        ledger.place_hold_in(tx, GUILD, 1, "j1", 200)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.write(doomed)
    for table in ("jobs", "job_events", "holds", "ledger_entries", "accounts", "audit_events"):
        row = await db.fetchone(f"SELECT COUNT(*) FROM {table}")
        assert row is not None and row[0] == 0, f"{table} kept rows of a rolled-back transaction"
    # The writer is usable again afterwards.
    await db.write(ledger.grant_in, GUILD, 1, 5, actor_id=9, reason="x")
    assert await account(db, 1) == (0, 5)


async def test_failing_commit_rolls_back_and_leaves_the_writer_usable(db: Database) -> None:
    """A transaction can fail at COMMIT itself (a deferred constraint here; disk full in real
    life): it is rolled back, and the writer is not left inside it for ever."""

    def fails_at_commit(tx: Conn) -> None:
        tx.execute("PRAGMA defer_foreign_keys = ON")
        record(tx, "doomed")
        tx.execute(
            "INSERT INTO holds (guild_id, member_id, job_id, amount, from_allowance,"
            " from_grant, created_at) VALUES (?, 1, 'no-such-job', 1, 1, 0, 'n')",
            (GUILD,),
        )

    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await db.write(fails_at_commit)
    await db.write(record, "after")
    assert await actions(db) == ["after"]
    row = await db.fetchone("SELECT COUNT(*) FROM holds")
    assert row is not None and row[0] == 0
    nobody_holds_the_write_lock(db.path)


async def wait_on(event: threading.Event, timeout: float = 10) -> None:
    """Wait for a thread (the writer's or reader's) to reach a point, without blocking the loop."""
    assert await asyncio.to_thread(event.wait, timeout), "the other thread never got there"


async def test_reader_does_not_see_uncommitted_writes(db: Database) -> None:
    inside, release = threading.Event(), threading.Event()

    def paused(tx: Conn) -> None:
        record(tx, "x")
        inside.set()
        assert release.wait(10)

    task = asyncio.create_task(db.write(paused))
    try:
        await wait_on(inside)  # the row is written but not committed
        row = await db.fetchone("SELECT COUNT(*) FROM audit_events")
        assert row is not None and row[0] == 0
        assert await db.read(scalar, "SELECT COUNT(*) FROM audit_events") == 0
    finally:
        release.set()
    await task
    row = await db.fetchone("SELECT COUNT(*) FROM audit_events")
    assert row is not None and row[0] == 1


async def test_read_sees_one_snapshot_while_writes_commit(db: Database) -> None:
    """db.read(fn): every statement of fn sees the same state, even if a write commits midway."""
    await db.write(record, "before")
    between, release = threading.Event(), threading.Event()

    def two_counts(conn: Conn) -> tuple[int, int]:
        first = scalar(conn, "SELECT COUNT(*) FROM audit_events")
        between.set()
        assert release.wait(10)
        return first, scalar(conn, "SELECT COUNT(*) FROM audit_events")

    task = asyncio.create_task(db.read(two_counts))
    try:
        await wait_on(between)
        await db.write(record, "during")  # commits while the read is between its statements
    finally:
        release.set()
    assert await task == (1, 1)
    assert await actions(db) == ["before", "during"]


async def test_concurrent_transactions_do_not_interleave(db: Database) -> None:
    log: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        def five_steps(tx: Conn) -> None:
            for step in range(5):
                log.append((name, step))
                tx.execute(
                    "INSERT INTO audit_events (action, target, created_at) VALUES (?, ?, 'now')",
                    (name, str(step)),
                )
                time.sleep(0.001)  # let every other thread run: none may write here

        await db.write(five_steps)

    await asyncio.gather(*(worker(f"t{i}") for i in range(20)))
    # Each task's five steps are contiguous, both in program order and in the table.
    names = [name for name, _ in log]
    assert len(names) == 100
    runs = [names[i] for i in range(0, len(names), 5)]
    assert sorted(runs) == sorted(f"t{i}" for i in range(20))
    assert names == [n for n in runs for _ in range(5)]
    assert [step for _, step in log] == [0, 1, 2, 3, 4] * 20
    assert await actions(db) == names


async def test_concurrent_read_modify_writes_lose_no_update(db: Database) -> None:
    """Fifty tasks on the bot's connection and fifty on a second one (as the CLI opens) each
    read a counter and write it back plus one: serialised, none fails and none is lost."""

    def setup(tx: Conn) -> None:
        tx.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        tx.execute("INSERT INTO counter VALUES (0)")

    await db.write(setup)

    def bump(tx: Conn) -> int:
        n = scalar(tx, "SELECT n FROM counter")
        time.sleep(0.001)  # widen the window a lost update would need
        tx.execute("UPDATE counter SET n = ?", (n + 1,))
        return n

    other = await Database(db.path).open()
    try:
        bumps = [database.write(bump) for _ in range(50) for database in (db, other)]
        seen = await asyncio.gather(*bumps)
    finally:
        await other.close()
    assert sorted(seen) == list(range(100))  # every transaction saw the one before it
    row = await db.fetchone("SELECT n FROM counter")
    assert row is not None and row[0] == 100


HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO audit_events (action, created_at) VALUES (?, 'n')", (sys.argv[2],))
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("committed", flush=True)
"""


class OtherProcess:
    """Another process (as the CLI would be) holding the database's write lock until released."""

    def __init__(self, path: Path, action: str) -> None:
        self.path, self.action = path, action
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> OtherProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLDER,
            str(self.path),
            self.action,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line == b"locked\n"
        return self

    async def release(self) -> None:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(b"\n")
        await self.proc.stdin.drain()
        assert await asyncio.wait_for(self.proc.stdout.readline(), 30) == b"committed\n"
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def nobody_holds_the_write_lock(path: Path) -> None:
    """A fresh connection takes and releases the write lock at once: no stray transaction."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=1)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_write_waits_for_another_process_instead_of_failing(db: Database) -> None:
    """The CLI (another process) holds the write lock: the bot's write waits its turn."""
    async with OtherProcess(db.path, "cli") as cli:
        task = asyncio.create_task(db.write(record, "bot"))
        await asyncio.sleep(0.3)
        assert not task.done(), "the write neither waited nor ran after the other process"
        assert await actions(db) == []
        await cli.release()
        await asyncio.wait_for(task, 10)
    assert await actions(db) == ["cli", "bot"]


async def test_second_connection_waits_while_a_write_runs(db: Database) -> None:
    """The other way round: a second Database (as the CLI opens) waits for the bot's write."""
    other = await Database(db.path).open()
    try:
        inside, release = threading.Event(), threading.Event()

        def bot_side(tx: Conn) -> None:
            record(tx, "bot begins")
            inside.set()
            assert release.wait(10)
            record(tx, "bot commits")

        bot = asyncio.create_task(db.write(bot_side))
        try:
            await wait_on(inside)
            cli = asyncio.create_task(other.write(record, "cli"))
            await asyncio.sleep(0.3)
            assert not cli.done(), "the second connection wrote inside the bot's transaction"
        finally:
            release.set()
        await bot
        await asyncio.wait_for(cli, 10)
        assert await actions(db) == ["bot begins", "bot commits", "cli"]
    finally:
        await other.close()


async def test_busy_timeout_expiring_fails_the_write_and_leaves_nothing_open(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the busy timeout the write fails (nothing written), and the writer is still usable."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)
    async with Database(db_path) as db, OtherProcess(db.path, "cli") as cli:
        # A StoreBusy (an OperationalError) naming why: callers tell the member and retry.
        with pytest.raises(dbmod.StoreBusy, match="another process holds its write lock"):
            await db.write(record, "bot")
        await cli.release()
        nobody_holds_the_write_lock(db.path)
        await db.write(record, "after")
        assert await actions(db) == ["cli", "after"]


def pair(tx: Conn, name: str) -> None:
    """A transaction of two rows: seeing one without the other would be a half-done write."""
    record(tx, f"{name}1")
    record(tx, f"{name}2")


async def test_cancelled_caller_never_leaves_a_transaction_half_done(db: Database) -> None:
    """Cancelled while its function runs: the caller is let go at once, and the transaction
    still ends whole on the writer's thread (there is no await inside it to be cancelled at)."""
    inside, release = threading.Event(), threading.Event()

    def victim(tx: Conn) -> None:
        record(tx, "v1")
        inside.set()
        assert release.wait(10)
        record(tx, "v2")

    task = asyncio.create_task(db.write(victim))
    try:
        await wait_on(inside)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert task in done and task.cancelled()
        assert await actions(db) == []  # still running: nothing of it is visible
    finally:
        release.set()
    await db.write(record, "after")
    assert await actions(db) == ["v1", "v2", "after"]
    nobody_holds_the_write_lock(db.path)


async def test_cancelled_while_waiting_for_another_process_leaves_the_writer_usable(
    db: Database,
) -> None:
    """The CLI holds the lock; one write waits in BEGIN IMMEDIATE on the busy timeout, another
    is queued behind it. Both callers are cancelled: later writes work, the other process can
    write, and no transaction is half done."""
    async with OtherProcess(db.path, "c") as cli:
        running = asyncio.create_task(db.write(pair, "r"))
        await asyncio.sleep(0.2)  # on the writer's thread, waiting for the lock
        queued = asyncio.create_task(db.write(pair, "q"))
        await asyncio.sleep(0.05)
        assert not running.done() and not queued.done()
        running.cancel()
        queued.cancel()
        # The callers are let go at once, while the other process still holds the lock.
        done, _ = await asyncio.wait({running, queued}, timeout=5)
        assert running in done and queued in done
        assert running.cancelled() and queued.cancelled()
        await cli.release()
    await db.write(pair, "after")
    # A cancelled caller does not take back a write already handed to the writer's thread:
    # each ran whole, in order, once the lock was free. Never one row of a pair without the other.
    assert await actions(db) == ["c", "r1", "r2", "q1", "q2", "after1", "after2"]
    # And the other process can still write too: nobody holds a stray transaction.
    nobody_holds_the_write_lock(db.path)
    async with OtherProcess(db.path, "c2") as cli:
        await cli.release()
    assert (await actions(db))[-1] == "c2"


async def test_reads_under_heavy_concurrency_see_every_committed_write(tmp_path):
    """Overlapping cursors on the shared reader once pinned an old snapshot: a row committed
    a moment ago read as missing while hundreds of other reads were in flight."""
    async with Database(tmp_path / "busy.sqlite3") as db:
        await db.write(lambda tx: tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        stop = asyncio.Event()

        async def background_reader() -> None:
            while not stop.is_set():
                await db.fetchall("SELECT * FROM t")

        def insert(tx: Conn, i: int) -> None:
            tx.execute("INSERT INTO t (id) VALUES (?)", (i,))

        readers = [asyncio.create_task(background_reader()) for _ in range(100)]
        try:
            for i in range(100):
                await db.write(insert, i)
                row = await db.fetchone("SELECT id FROM t WHERE id = ?", (i,))
                assert row is not None, f"row {i} was committed but reads as missing"
        finally:
            stop.set()
            await asyncio.gather(*readers)


async def test_jobs_made_from_a_job_are_found_by_index_not_by_reading_every_job(
    db: Database,
) -> None:
    """Admission looks a job's children up inside its write transaction (one image per
    enhancement, one press one tool job) and the jobs table is never pruned: the lookups must
    use an index, not read the whole table while holding the write lock."""
    jobs = JobStore(db)

    def plans(conn: Conn) -> list[str]:
        found = []
        for query in (
            lambda: jobs.child_in(conn, "j-parent"),
            lambda: jobs.same_tool_active_in(conn, 1, "j-parent", "imageUpscaler", 0),
        ):
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            query()
            conn.set_trace_callback(None)
            [sql] = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
            plan = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            found.append(" | ".join(str(step[-1]) for step in plan))
        return found

    for plan in await db.read(plans):
        assert "jobs_parent" in plan and "SCAN jobs" not in plan, plan


async def test_active_jobs_and_a_guilds_jobs_in_flight_are_read_by_index(db: Database) -> None:
    """The reconciler reads the active jobs every minute and admission counts a guild's jobs
    in flight in its write transaction; the jobs table is never pruned, so neither may read
    every job (or every job the guild ever had)."""
    from bot.store.jobs import ACTIVE_JOBS, IN_FLIGHT, IN_FLIGHT_COUNTS

    def plan(conn: Conn, sql: str, params: tuple[object, ...]) -> str:
        steps = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return " | ".join(str(step[-1]) for step in steps)

    active = await db.read(plan, ACTIVE_JOBS, ())
    assert "USING INDEX jobs_active" in active and "SCAN jobs" not in active, active
    counts = await db.read(plan, IN_FLIGHT_COUNTS, (1, GUILD, *(s.value for s in IN_FLIGHT)))
    assert "USING INDEX jobs_guild_active" in counts, counts


async def test_a_database_whose_folder_was_deleted_is_still_saved(tmp_path: Path) -> None:
    """`rm -rf data/` (or a cleanup script) while the bot runs: the open file still holds every
    hold and charge, but the copy the bot makes of it had nowhere to go, and was lost with
    the process."""
    folder = tmp_path / "data"
    db = await Database(folder / "bot.sqlite3").open()
    try:
        await db.write(record, "before")
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        with pytest.raises(dbmod.StoreBusy) as refused:
            await db.write(record, "after")
        assert refused.value.reason == "replaced"
        assert db.orphan is not None and db.orphan.parent == folder
    finally:
        await db.close()
    with sqlite3.connect(db.orphan) as kept:
        assert [r[0] for r in kept.execute("SELECT action FROM audit_events")] == ["before"]
    kept.close()
