"""Attachments sent from bytes in memory.

discord.py leaves open a file object it was handed, and its `File.close()` sets the object's
own bound `close` back on it: the buffer then sits in a reference cycle that only the
collector's full pass frees, and those are rare here (bot.memory_tuning). With results of up to
10 MB each, a burst of deliveries kept hundreds of MB alive that way (bench/engine.py: peak RSS
from 190 MB in flight to over 500 MB while 1 000 results were posted). A MemoryFile frees its
buffer as soon as discord.py is done with it.
"""

from __future__ import annotations

import io

import discord


class MemoryFile(discord.File):
    def __init__(self, data: bytes, filename: str) -> None:
        super().__init__(io.BytesIO(data), filename=filename)

    def close(self) -> None:
        """Called by discord.py once the request is over (all its retries done)."""
        buffer = self.fp
        super().close()
        vars(buffer).pop("close", None)  # no cycle: the class's own close method again
        buffer.close()
