"""A database file replaced or deleted under the running bot (a backup restored over it, an
`rm`, a volume swapped): its open connections still write to the old file, which nothing will
read again — every hold and charge made since would be lost at the next start. The bot notes
which file it opened, refuses writes once the path names another (or none), and saves what the
old file holds beside it for the operator."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

Identity = tuple[int, int]


def identity(path: Path) -> Identity | None:
    """The file the path names now (device, inode); None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


def change(path: Path, opened: Identity) -> str | None:
    """'replaced' or 'deleted' when the path no longer names the file the bot opened."""
    try:
        now = identity(path)
    except OSError:  # cannot look (a folder's permissions changed): not evidence of a swap
        return None
    if now is None:
        return "deleted"
    return None if now == opened else "replaced"


def save_orphan(conn: sqlite3.Connection, path: Path, how: str) -> Path | None:
    """Copy the old file (through the bot's open connection) beside the path, and tell the
    operator what happened and what to do; the copy's path, None if it could not be made.
    Runs on the writer's thread, once."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.orphaned-{stamp}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # the whole folder may have gone
        with contextlib.closing(sqlite3.connect(kept)) as target:
            conn.backup(target)
    except (OSError, sqlite3.Error) as exc:
        _tell(path, how, f"what it held could not be saved beside it ({exc})")
        return None
    _tell(path, how, f"what it held is saved at {kept} (every hold and charge up to now)")
    return kept


def _tell(path: Path, how: str, saved: str) -> None:
    log.error(
        "the database file %s was %s while the bot ran: the bot refuses every write from now "
        "on (it would write to the old file, which nothing reads: holds and charges lost); "
        "%s. Stop the bot, put back the database you mean to keep, and start it again",
        path,
        how,
        saved,
    )
