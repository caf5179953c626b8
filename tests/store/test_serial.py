"""SerialConnection: one sqlite3 connection, one thread, whole functions in order."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.store.db import Database
from bot.store.serial import ConnectionClosed, SerialConnection
from tests.store.test_db import wait_on, worker_threads_after


def connect_to(path: Path) -> Callable[[], sqlite3.Connection]:
    return lambda: sqlite3.connect(path, isolation_level=None)


async def test_every_function_runs_on_the_one_thread_in_the_order_handed_over(
    tmp_path: Path,
) -> None:
    conn = SerialConnection("test")
    await conn.open(connect_to(tmp_path / "s.sqlite3"))
    seen: list[tuple[int, int]] = []

    def note(c: sqlite3.Connection, n: int) -> int:
        seen.append((n, threading.get_ident()))
        return c.execute("SELECT ?", (n,)).fetchone()[0]

    try:
        results = await asyncio.gather(*(conn.run(note, n) for n in range(50)))
    finally:
        await conn.close()
    assert results == list(range(50))
    assert [n for n, _ in seen] == list(range(50))
    assert len({ident for _, ident in seen}) == 1
    assert seen[0][1] != threading.get_ident()  # not the event loop's thread


async def test_a_cancelled_caller_lets_go_but_its_function_still_runs(tmp_path: Path) -> None:
    conn = SerialConnection("test")
    await conn.open(connect_to(tmp_path / "s.sqlite3"))
    inside, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocker(c: sqlite3.Connection) -> None:
        inside.set()
        assert release.wait(10)
        ran.append("blocker")

    def queued(c: sqlite3.Connection) -> None:
        ran.append("queued")
        raise ValueError("nobody is waiting for this error")

    first = asyncio.create_task(conn.run(blocker))
    await wait_on(inside)
    second = asyncio.create_task(conn.run(queued))
    await asyncio.sleep(0)
    second.cancel()
    first.cancel()
    done, _ = await asyncio.wait({first, second}, timeout=5)
    assert done == {first, second} and first.cancelled() and second.cancelled()
    release.set()
    await conn.close()  # waits for what was handed over
    assert ran == ["blocker", "queued"]


async def test_close_ends_the_thread_and_later_calls_fail_clearly(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    conn = SerialConnection("test")
    await conn.open(connect_to(tmp_path / "s.sqlite3"))
    await conn.close()
    assert worker_threads_after(before) == []
    with pytest.raises(ConnectionClosed, match="not open"):
        await conn.run(lambda c: None)


async def test_a_closed_database_can_be_opened_again(db_path: Path) -> None:
    db = Database(db_path)
    for _ in range(2):
        await db.open()
        await db.write(lambda tx: tx.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)"))
        await db.close()
    with pytest.raises(ConnectionClosed):
        await db.fetchall("SELECT 1")
    with pytest.raises(ConnectionClosed):
        await db.write(lambda tx: None)
