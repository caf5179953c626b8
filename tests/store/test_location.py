"""What the operator is told when a file of the bot's belongs to another uid."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.store.location import file_unwritable


@pytest.mark.parametrize("left", ["bot.sqlite3-wal", "bot.sqlite3-shm", "bot.sqlite3.lock"])
def test_the_chown_example_covers_every_file_beside_the_database(tmp_path: Path, left) -> None:
    """A run as root leaves -wal, -shm and the lock behind: an example naming only the file
    found first (chown UID bot.sqlite3-wal*) left the next one refused at the next start."""
    found = tmp_path / left
    found.write_bytes(b"")
    advice = str(file_unwritable("a file of the database", found))
    assert f"chown {os.geteuid()} {tmp_path / 'bot.sqlite3'}*)" in advice
