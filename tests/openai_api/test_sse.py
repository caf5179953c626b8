"""The server-sent events decoder: the WHATWG line rules, whatever the chunking, with a size cap."""

from __future__ import annotations

import pytest

from bot.openai_api.sse import EventTooLarge, SSEDecoder, SSEEvent

STREAM = (
    b": keep-alive\n\n"
    b"event: image_generation.partial_image\n"
    b'data: {"a":\n'
    b"data: 1}\n\n"
    b"id: 7\r\nretry: 100\r\nevent: x\r\ndata:no-space\r\n\r\n"
    b"data: cr only\r\rdata: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("image_generation.partial_image", '{"a":\n1}'),
    SSEEvent("x", "no-space"),
    SSEEvent(None, "cr only"),
    SSEEvent(None, "[DONE]"),
]


def decode(chunks: list[bytes], cap: int = 10_000) -> list[SSEEvent]:
    decoder = SSEDecoder(cap)
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_multi_line_data_comments_and_every_line_ending() -> None:
    assert decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_the_same_events_whatever_the_chunk_boundaries(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert decode(chunks) == EXPECTED


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    # "\r" ends one chunk and "\n" starts the next: not an extra blank line.
    assert decode([b"data: a\r", b"\ndata: b\r", b"\n\r\n"]) == [SSEEvent(None, "a\nb")]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert decode([b"event: ping\n\n: comment\n\n"]) == []


def test_the_last_event_is_kept_when_the_stream_ends_without_a_blank_line() -> None:
    assert decode([b'data: {"done": true}']) == [SSEEvent(None, '{"done": true}')]


def test_an_event_over_the_cap_is_refused_even_without_a_line_end() -> None:
    with pytest.raises(EventTooLarge):
        decode([b"data: " + b"A" * 200], cap=100)
    decoder = SSEDecoder(100)
    decoder.feed(b"data: " + b"A" * 60 + b"\n")
    with pytest.raises(EventTooLarge):  # two lines of one event add up
        decoder.feed(b"data: " + b"A" * 60 + b"\n")


def test_the_cap_is_per_event() -> None:
    one = b"data: " + b"A" * 80 + b"\n\n"
    assert len(decode([one * 5], cap=100)) == 5
