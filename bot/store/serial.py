"""One plain sqlite3 connection that lives on a thread of its own.

`await conn.run(fn, ...)` hands the whole function over to that thread at once and waits for it:
the thread runs one function at a time, in the order they were handed over, so two functions
never interleave. A caller cancelled while it waits is let go at once, but a function already
handed over still runs to its end (a transaction is never cut in half) and its result is
dropped. aiosqlite keeps its thread's queue private, hence this small class of our own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ConnectionClosed(RuntimeError):
    """The connection was closed (or never opened)."""


class SerialConnection:
    def __init__(self, name: str) -> None:
        # One worker: every function runs on the same thread, which owns the connection.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Create the connection on its own thread (sqlite3 checks it is only used there)."""
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
            self._thread.shutdown(wait=False)

    async def _hand_over(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        try:
            work = self._thread.submit(fn, *args, **kwargs)
        except RuntimeError:  # shut down
            raise ConnectionClosed("database is closed") from None

        def done(work: concurrent.futures.Future[T]) -> None:
            # RuntimeError: the event loop is gone, and with it the caller.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, waiter, work)

        work.add_done_callback(done)
        return await waiter


def _settle(waiter: asyncio.Future[T], work: concurrent.futures.Future[T]) -> None:
    if waiter.done():  # the caller was cancelled: nobody wants the result
        return
    error = work.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(work.result())
