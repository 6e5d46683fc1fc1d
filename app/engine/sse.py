"""Incremental Server-Sent Events parser (the `text/event-stream` framing only).

Bytes arrive from the network split anywhere, even inside a UTF-8 sequence or
between the `\\r` and `\\n` of a line ending; `feed` keeps what is incomplete and
returns the `data` of every event completed so far. Only `data` matters to the
completions backends, so `event`, `id` and `retry` fields are parsed and dropped.
"""

from __future__ import annotations

import codecs
import re

_LINE_END = re.compile(r"\r\n|\r|\n")

DEFAULT_MAX_EVENT_CHARS = 1 << 20
"""Far above any completion chunk; a peer that never ends a line must not exhaust memory."""


class SSEError(ValueError):
    """The stream broke the framing rules or a size limit."""


class SSEParser:
    """Feed chunks with `feed`, then call `close` at end of stream for the last event."""

    def __init__(self, *, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max = max_event_chars
        self._tail = ""
        self._after_cr = False
        self._started = False
        self._data: list[str] = []
        self._data_chars = 0
        self._closed = False
        self._idle = False
        """Started, with no partial line, event or character pending: the fast path may run."""

    @property
    def idle(self) -> bool:
        """Nothing pending: a chunk of whole events may be read without this parser."""
        return self._idle and not self._closed

    def feed(self, chunk: bytes | str) -> list[str]:
        """Parse a chunk and return the `data` payloads of the events it completed."""
        if self._closed:
            raise SSEError("feed() after close()")
        if isinstance(chunk, bytes):
            if self._idle:
                fast = self._whole_data_events(chunk)
                if fast is not None:
                    return fast
            text = self._decoder.decode(chunk)
        else:
            text = chunk
        events = self._feed_text(text)
        self._idle = self._started and not (
            self._tail
            or self._data
            or self._after_cr
            or self._decoder.getstate()[0]  # half a character from the last chunk
        )
        return events

    def _whole_data_events(self, chunk: bytes) -> list[str] | None:
        """The common case, cheaply: with nothing pending (``_idle``), a chunk of whole
        events that are each one ``data: `` line ending in a blank line (vLLM sends one per
        token). None when the chunk needs the general parser."""
        if (
            not chunk.startswith(b"data: ")
            or not chunk.endswith(b"\n\n")
            or b"\r" in chunk
            or len(chunk) > self._max
        ):
            return None
        data = chunk[6:-2]
        if b"\n" not in data:  # one event, the usual chunk: no split
            try:
                return [data.decode()]
            except UnicodeDecodeError:
                return None
        events = chunk[:-2].split(b"\n\n")
        if any(not e.startswith(b"data: ") or b"\n" in e for e in events):
            return None
        try:
            return [e[6:].decode() for e in events]
        except UnicodeDecodeError:
            return None  # let the incremental decoder replace what is broken

    def close(self) -> list[str]:
        """End of stream: a last event that lacks its blank line is still delivered."""
        if self._closed:
            return []
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._closed = True
        if self._tail:
            line, self._tail = self._tail, ""
            self._line(line, events)
        self._dispatch(events)
        return events

    def _feed_text(self, text: str) -> list[str]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            # The `\n` of a `\r\n` split across chunks: the line already ended.
            text = text[1:]
        self._after_cr = False
        if not text:
            return []
        parts = _LINE_END.split(self._tail + text)
        self._tail = parts.pop()
        if not self._tail and text.endswith("\r"):
            self._after_cr = True
        if len(self._tail) > self._max:
            raise SSEError(f"SSE line longer than {self._max} characters")
        events: list[str] = []
        for line in parts:
            self._line(line, events)
        return events

    def _line(self, line: str, events: list[str]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_chars += len(value) + 1
            if self._data_chars > self._max:
                raise SSEError(f"SSE event larger than {self._max} characters")

    def _dispatch(self, events: list[str]) -> None:
        if self._data:
            events.append("\n".join(self._data))
        self._data = []
        self._data_chars = 0
