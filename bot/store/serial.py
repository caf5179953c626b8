"""One plain sqlite3 connection that lives on a thread of its own.

`await conn.run(fn, ...)` hands the whole function over to that thread at once and waits for it:
the thread runs one function at a time, in the order they were handed over, so two functions
never interleave. A caller cancelled while it waits is let go at once, but a function already
handed over still runs to its end (a transaction is never cut in half) and its result is
dropped. aiosqlite keeps its thread's queue private, hence this small class of our own: a
queue and a thread, as lean as aiosqlite's (~11 µs a hand-off with 50 callers here, as its
`_execute`; a ThreadPoolExecutor's bookkeeping made it ~18 µs).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
# What the thread is given: the function, its arguments, and where to send the outcome.
_Work = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]


class ConnectionClosed(RuntimeError):
    """The connection was closed (or never opened)."""


class SerialConnection:
    def __init__(self, name: str) -> None:
        self._name = name
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Start the thread and create the connection there (sqlite3 checks it stays there)."""
        # A daemon: a process that never closes its database still exits (SQLite rolls back
        # whatever transaction was cut short).
        self._thread = threading.Thread(
            target=_serve, args=(self._work,), name=self._name, daemon=True
        )
        self._thread.start()
        self._conn = await self._hand_over(connect)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """fn(connection, *args, **kwargs) on the connection's thread."""
        if self._conn is None:
            raise ConnectionClosed("database is not open")
        return await self._hand_over(fn, self._conn, *args, **kwargs)

    async def close(self) -> None:
        """Close after everything already handed over has run; the thread then ends."""
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                await self._hand_over(conn.close)
        finally:
            if self._thread is not None:
                self._thread = None
                self._work.put(None)

    async def _hand_over(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._thread is None:
            raise ConnectionClosed("database is not open")
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._work.put((fn, args, kwargs, waiter))
        return await waiter


def _serve(work: queue.SimpleQueue[_Work | None]) -> None:
    while (item := work.get()) is not None:
        fn, args, kwargs, waiter = item
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # the caller's to handle, whatever it is
            _send(waiter, _fail, exc)
        else:
            _send(waiter, _succeed, result)


def _send(waiter: asyncio.Future[Any], settle: Callable[..., None], value: Any) -> None:
    # RuntimeError: the event loop is gone, and with it the caller.
    with contextlib.suppress(RuntimeError):
        waiter.get_loop().call_soon_threadsafe(settle, waiter, value)


def _succeed(waiter: asyncio.Future[Any], result: Any) -> None:
    if not waiter.done():  # done: the caller was cancelled, nobody wants the result
        waiter.set_result(result)


def _fail(waiter: asyncio.Future[Any], error: BaseException) -> None:
    if not waiter.done():
        waiter.set_exception(error)
