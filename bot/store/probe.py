"""A database file looked at without changing it: is it there, and which schema does it hold.

Commands that only read must not create an empty database when run from the wrong folder, and
no command may touch a database written by a newer version of the bot.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.store.db import ANY_OBJECT, DatabaseProblem, NotOurDatabase, SchemaTooNew, newest_schema


class DatabaseMissing(DatabaseProblem):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no database at {path.absolute()} (set BOT_DB_PATH or run from the bot's folder)"
        )


class NotADatabase(DatabaseProblem):
    def __init__(self, path: Path, reason: object) -> None:
        super().__init__(f"cannot use the database at {path.absolute()}: {reason}")


MAX_VERSION = 999  # migrations are NNN_name.sql


def require_database(path: Path) -> None:
    """Raise DatabaseMissing unless a file is there (a folder is not a database either)."""
    if path.is_dir():
        raise NotADatabase(path, "it is a folder; BOT_DB_PATH names the .sqlite3 file")
    if not path.exists():
        raise DatabaseMissing(path)


def schema_version(path: Path) -> int:
    """The newest migration applied to the file (0 for a file with none), read-only."""
    require_database(path)
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotADatabase(path, exc) from None
    try:
        known = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if known is None:
            if conn.execute(ANY_OBJECT).fetchone() is not None:
                raise NotOurDatabase(path)
            return 0
        version = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        if not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
            # Migrations are numbered 001-999: anything else is a damaged page, not a newer bot.
            raise NotADatabase(path, f"its schema_version table is damaged ({version!r:.40})")
        return version
    except sqlite3.DatabaseError as exc:  # "file is not a database"
        raise NotADatabase(path, exc) from None
    finally:
        conn.close()


def check_schema(path: Path) -> int:
    """The file's schema version; SchemaTooNew if this code does not know it."""
    found = schema_version(path)
    known = newest_schema()
    if found > known:
        raise SchemaTooNew(path, found, known)
    return found
