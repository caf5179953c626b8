"""Opening the bot's database from a command: read-only commands never create one."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Settings
from bot.store.db import Database
from bot.store.probe import NotADatabase, check_schema, require_database


@asynccontextmanager
async def open_database(settings: Settings, *, create: bool = False) -> AsyncIterator[Database]:
    """The configured database, open. Without `create`, a missing file is DatabaseMissing (run
    from the wrong folder, an empty database would hide every balance). A newer schema is
    SchemaTooNew either way, a file SQLite cannot use NotADatabase.

    Only a database `create` makes is migrated here: an older one is SchemaTooOld, since the
    old bot may still run on it and could not start again on a newer schema (the new bot's
    start migrates it). Nor is the WAL checkpointed on close: that would hold the running bot's
    writes for up to the busy timeout; the bot checkpoints itself, and SQLite folds the WAL in
    when the last connection closes."""
    path = settings.database.path
    fresh = False
    if create:
        if path.is_dir():
            raise NotADatabase(path, "it is a folder; BOT_DB_PATH names the .sqlite3 file")
        fresh = not path.exists()
    else:
        require_database(path)
    if not fresh:
        # Read-only first: opening it for writing would turn another program's file (or a
        # newer bot's) to WAL mode before it could be refused.
        check_schema(path)
    try:
        db = await Database(path, migrate=fresh, checkpoint=False).open()
    except (sqlite3.DatabaseError, OSError) as exc:  # not a database, locked, no access
        raise NotADatabase(path, exc) from None
    if fresh:  # run from the wrong folder, a grant would go where the bot never looks
        print(
            f"note: created a new database at {path.absolute()} (there was none); if the bot "
            "runs elsewhere, run this where it runs (docker compose exec bot ...) or set "
            "BOT_DB_PATH",
            file=sys.stderr,
        )
    try:
        yield db
    finally:
        await db.close()
