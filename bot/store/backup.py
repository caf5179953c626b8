"""Backups: a consistent copy of the live database through SQLite's online backup API.

The copy is taken in one step, inside one read transaction: it is the database exactly as some
commit left it, and in WAL mode the running bot keeps writing meanwhile (a stepped backup
would restart each time the bot commits). It is written to a temporary file beside OUT and
renamed into place, so OUT is never half a backup.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bot.store.db import DatabaseProblem
from bot.store.probe import NotADatabase, require_database


class BackupRefused(DatabaseProblem):
    pass


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    schema: int


def backup(source: Path, out: Path, *, force: bool = False) -> BackupResult:
    require_database(source)
    _check_target(source, out, force=force)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        schema = _copy(source, partial)
        os.replace(partial, out)
    except sqlite3.OperationalError as exc:  # the backup's side: no room, no permission...
        raise BackupRefused(f"cannot write the backup {out.absolute()}: {exc}") from None
    except OSError as exc:
        raise BackupRefused(f"cannot write the backup {out.absolute()}: {exc.strerror}") from None
    finally:
        # A partial file left (or a read-only folder that had none) must not hide why.
        with contextlib.suppress(OSError):
            partial.unlink()
    _sync_folder(out.parent)
    return BackupResult(out.absolute(), out.stat().st_size, schema)


def _check_target(source: Path, out: Path, *, force: bool) -> None:
    if out.is_dir():
        raise BackupRefused(
            f"{out} is a folder: give the backup's file name, e.g. {out}/bot.sqlite3"
        )
    if not out.parent.is_dir():
        raise BackupRefused(f"no folder {out.parent.absolute()} for the backup: create it first")
    if out.exists():
        if out.samefile(source):
            raise BackupRefused(f"{out} is the database itself: choose another file")
        if not force:
            raise BackupRefused(f"{out.absolute()} already exists: use --force to overwrite it")


def _copy(source: Path, dest: Path) -> int:
    """Copy source into dest (a new file); returns the copy's schema version."""
    # A plain connection to the existing file (a read-only one would leave -wal and -shm files
    # behind a stopped bot's database); it only reads.
    try:
        src = sqlite3.connect(source)
    except sqlite3.Error as exc:
        raise NotADatabase(source, exc) from None
    try:
        dst = sqlite3.connect(dest)
        try:
            try:
                src.backup(dst)  # pages=-1: all in one step, one snapshot
            except sqlite3.OperationalError:
                raise  # the copy could not be written (a full disk): the caller says so
            except sqlite3.DatabaseError as exc:  # "file is not a database"
                raise NotADatabase(source, exc) from None
            # One self-contained file: no -wal beside the copy (the bot turns WAL back on).
            dst.execute("PRAGMA journal_mode = DELETE")
            has_versions = dst.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if has_versions is None:
                return 0
            return int(
                dst.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            )
        finally:
            dst.close()
    finally:
        src.close()


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (the copy's data was synced by SQLite's commit)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
