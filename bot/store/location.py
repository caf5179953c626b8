"""Where the database lives, checked before anything opens it: a path the bot cannot create or
write is one plain sentence naming the path and the uid that needs access, not a traceback."""

from __future__ import annotations

import os
import re
from pathlib import Path


class DatabaseUnavailable(Exception):
    """The database (or its folder) cannot be created or written; the text says what to do."""


def _can(path: Path, mode: int) -> bool:
    return os.access(path, mode, effective_ids=True)


def _owner(path: Path) -> str:
    try:
        return f"owned by uid {path.stat().st_uid}"
    except OSError:
        return "owner unknown"


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_writable(db_path: Path, *, create: bool = True) -> None:
    """Make sure the database's folder exists (`create=False`: only that it could be made)
    and the database, its journal and its lock can be written; raise DatabaseUnavailable
    naming the path, its owner and the uid the bot runs as."""
    try:
        _check(db_path, create)
    except PermissionError as exc:  # a folder on the way cannot even be looked into
        raise DatabaseUnavailable(
            f"cannot reach the database {db_path}: permission denied ({exc.filename}); the bot "
            f"runs as uid {os.geteuid()}, which needs access to every folder on that path"
        ) from None


def _check(db_path: Path, create: bool) -> None:
    uid = os.geteuid()
    hint = "or set BOT_DB_PATH to a place it can write"
    folder = db_path.parent
    existing = _nearest_existing(folder)
    if existing.exists() and not existing.is_dir():
        raise DatabaseUnavailable(
            f"cannot create the database folder {folder}: {existing} is a file, not a folder "
            f"(check BOT_DB_PATH)"
        )
    if _read_only(existing):  # no chown can help there
        raise DatabaseUnavailable(
            f"cannot write the database {db_path}: {existing} is on a filesystem mounted "
            f"read-only; mount it read-write (no :ro on the volume; after disk errors, check "
            f"the disk and remount) {hint}"
        )
    if existing != folder:
        if not _can(existing, os.W_OK | os.X_OK):
            raise DatabaseUnavailable(
                f"cannot create the database folder {folder}: {existing} is not writable "
                f"({_owner(existing)}) and the bot runs as uid {uid}; give uid {uid} write "
                f"access there {hint}"
            )
        if not create:  # nothing in it yet to check
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot create the database folder {folder}: {exc.strerror or exc}"
            ) from None
    if not _can(folder, os.W_OK | os.X_OK):
        raise DatabaseUnavailable(
            f"cannot write in the database folder {folder} ({_owner(folder)}); the bot runs as "
            f"uid {uid}: give that uid write access (e.g. chown -R {uid} {folder}) {hint}"
        )
    if db_path.is_dir():
        raise DatabaseUnavailable(f"the database path {db_path} is a folder, not a file")
    if db_path.exists() and not _can(db_path, os.R_OK | os.W_OK):
        raise file_unwritable("the database", db_path)
    # Left by a run that was killed: SQLite would open the database read-only, and refuse
    # every write the bot makes.
    for suffix in ("-wal", "-shm"):
        journal = db_path.with_name(db_path.name + suffix)
        if journal.exists() and not _can(journal, os.R_OK | os.W_OK):
            raise file_unwritable("the database's journal", journal)
    lock = lock_path(db_path)
    if lock.exists() and not _can(lock, os.R_OK | os.W_OK):  # left by a run as root
        raise file_unwritable("the lock file", lock)


def lock_path(db_path: Path) -> Path:
    """Beside the resolved file: a symlink to the database is the same database, and must
    meet the same lock."""
    real = db_path.resolve()
    return real.with_name(real.name + ".lock")


def file_unwritable(what: str, path: Path) -> DatabaseUnavailable:
    """A file of the bot's (the database, its lock) another uid owns. The advice covers the
    files beside the database too (lock, heartbeat, -wal, -shm): a run as another user (root)
    leaves them all."""
    uid = os.geteuid()
    # The example names the database itself, so its * covers -wal, -shm, .lock and the rest.
    database = path.with_name(re.sub(r"(-wal|-shm|-journal|\.lock)$", "", path.name))
    return DatabaseUnavailable(
        f"cannot write {what} {path} ({_owner(path)}); the bot runs as uid {uid}: give that "
        f"uid read and write access to it and the files beside it (e.g. chown {uid} "
        f"{database}*) "
        "or set BOT_DB_PATH to a place it can write"
    )
