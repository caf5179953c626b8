"""A database that refuses writes for a while, as an operator's machine can make it:
- unwritable(): its disk stops taking writes mid-run (a filesystem remounted read-only after
  errors): its write-ahead log is made immutable, so every write fails (SQLite: a disk I/O
  error, or "attempt to write a readonly database"), as root too (file modes do not stop
  root). Skipped where the filesystem or the process cannot set the flag.
- write_locked(): another process (an operator's sqlite3 shell) holds the write lock."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _chattr(flag: str, path: Path) -> bool:
    tool = shutil.which("chattr")
    if tool is None:
        return False
    return subprocess.run([tool, flag, str(path)], capture_output=True).returncode == 0


@contextmanager
def unwritable(db_path: Path) -> Iterator[None]:
    """Writes to the open WAL-mode database at db_path fail until the block ends."""
    wal = db_path.with_name(db_path.name + "-wal")
    if not wal.exists() or not _chattr("+i", wal):
        pytest.skip("cannot make the database's WAL immutable here (chattr +i)")
    try:
        yield
    finally:
        _chattr("-i", wal)


@contextmanager
def write_locked(db_path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock until the block ends."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()
