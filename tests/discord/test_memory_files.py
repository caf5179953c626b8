"""Images sent from memory are freed once discord.py has sent them (not left to the rare full
collection, see bot.memory_tuning), and stay readable for discord.py's own retries until then."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from discord.http import handle_message_parameters

from bot.discord_adapter.files import MemoryFile


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees objects: what a cycle holds stays."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_the_buffer_is_freed_when_the_send_is_over(no_collector: None) -> None:
    data = b"\x89PNG" + bytes(2_000_000)
    file = MemoryFile(data, "result.png")
    buffer = weakref.ref(file.fp)
    with handle_message_parameters(content="done", file=file) as params:
        assert params.files == [file]
        assert file.fp.read() == data  # what aiohttp streams
    assert file.fp.closed
    del file, params
    assert buffer() is None, "the sent image's buffer is still alive"


def test_retries_read_the_whole_image_again_until_the_send_is_over() -> None:
    data = bytes(range(256)) * 100
    file = MemoryFile(data, "a.png")
    with handle_message_parameters(file=file):
        for attempt in range(3):  # as discord.py's request loop does before each try
            file.reset(seek=attempt)
            assert file.fp.read() == data
    assert file.filename == "a.png"
