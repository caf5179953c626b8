"""A database whose disk stops taking writes mid-run (a filesystem remounted read-only after
errors): its write-ahead log is made immutable, so every write fails (SQLite: a disk I/O error,
or "attempt to write a readonly database"), as root too (file modes do not stop root).
Skipped where the filesystem or the process cannot set the flag."""

from __future__ import annotations

import shutil
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
