"""An incremental server-sent events decoder with a cap on each event's size.

Follows the WHATWG rules: lines end with CRLF, LF or CR (a CR at a chunk's end waits for the
next chunk); `data:` lines join with newlines; `event:` names the event; lines starting with ":"
are comments (keep-alives); one space after the colon is dropped; a blank line dispatches an
event; an event without data is not dispatched. A final event without its blank line is kept
at the end of the stream (some servers omit it); the caller's JSON parsing decides if it is whole.

Events carry base64 images of several megabytes on one line, so the decoder scans each byte once
and refuses an event past `max_event_bytes` instead of buffering without end.
"""

from __future__ import annotations

from dataclasses import dataclass


class EventTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class SSEEvent:
    event: str | None
    data: str


class SSEDecoder:
    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for a line end
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            end = self._line_end()
            if end is None:
                break
            line_end, next_start = end
            line = bytes(self._buffer[:line_end]).decode("utf-8", "replace")
            del self._buffer[:next_start]
            self._scanned = 0
            event = self._line(line)
            if event is not None:
                events.append(event)
        if self._size + len(self._buffer) > self.max_event_bytes:
            raise EventTooLarge(f"a server-sent event is over {self.max_event_bytes:,} bytes")
        return events

    def close(self) -> list[SSEEvent]:
        """At the end of the stream: the last line and event, even without their blank line."""
        events = []
        if self._buffer:
            line = bytes(self._buffer).decode("utf-8", "replace")
            self._buffer.clear()
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _line_end(self) -> tuple[int, int] | None:
        """(end of the first line, start of the next) if a whole line is buffered."""
        buffer = self._buffer
        lf = buffer.find(b"\n", self._scanned)
        cr = buffer.find(b"\r", self._scanned, lf if lf >= 0 else len(buffer))
        if cr >= 0:
            if cr + 1 == len(buffer):  # a CR at the end: the next chunk may start with LF
                self._scanned = cr
                return None
            return cr, cr + 2 if buffer[cr + 1] == 0x0A else cr + 1
        if lf >= 0:
            return lf, lf + 1
        self._scanned = len(buffer)
        return None

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > self.max_event_bytes:
                raise EventTooLarge(f"a server-sent event is over {self.max_event_bytes:,} bytes")
        elif name == "event":
            self._event = value
        return None  # id, retry and unknown fields do not matter here

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._size = [], None, 0
        if not data:
            return None
        return SSEEvent(event=event or None, data="\n".join(data))
