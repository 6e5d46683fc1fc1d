"""What a run asks of the gateway (`RequestSpec`) and what one request brought back
(`Exchange`: audio bytes with their arrival times, and why it failed), whatever the
transport: HTTP (`client`) or a WebSocket session (`ws`); `measure` turns an exchange into
figures."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from stress_test.corpus import Text

Endpoint = Literal["speech", "vc", "ws", "deepgram"]
StreamFormat = Literal["audio", "sse"]


@dataclass(frozen=True)
class Reference:
    """The clip and transcript sent with every `vc` request."""

    audio: bytes
    filename: str
    text: str


@dataclass(frozen=True)
class RequestSpec:
    """What every request of a run asks for, apart from its text and voice."""

    endpoint: Endpoint = "speech"
    model: str = "tts-1"
    response_format: str = "pcm"
    stream: bool = True
    stream_format: StreamFormat = "audio"
    extra: Mapping[str, Any] = field(default_factory=dict)
    reference: Reference | None = None
    words_per_second: float = 40.0
    """WebSocket endpoints: the pace the text is written at, word by word (0: all at once)."""


@dataclass
class Exchange:
    """One request as the client saw it; times are seconds since the request was sent."""

    text: Text
    voice: str
    started: float
    """time.perf_counter() when the request was sent (the WebSocket handshake began)."""
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(time, audio bytes received so far) per body chunk, SSE delta or WebSocket message."""
    audio: bytearray = field(default_factory=bytearray)
    ended: float = 0.0
    status: int | None = None
    """The HTTP status (101 for a WebSocket session that was accepted)."""
    close_code: int | None = None
    """WebSocket: the close code the gateway sent (1006: the connection ended without one)."""
    sentence_sent: float | None = None
    """WebSocket: when the message that completed the first sentence was sent."""
    cause: str | None = None
    """Why it failed: the error envelope's code, or what went wrong on the wire."""
    message: str | None = None
    in_band: bool = False
    """The failure came after the response was committed: an SSE `error` event, a WebSocket
    `error`/`Error`/`Warning` message or close."""

    def fail(self, cause: str, message: str, *, in_band: bool = False) -> None:
        if self.cause is None:
            self.cause, self.message, self.in_band = cause, message, in_band

    def received(self, data: bytes) -> None:
        """Audio bytes arrived now."""
        if data:
            self.audio.extend(data)
            self.arrivals.append((time.perf_counter() - self.started, len(self.audio)))


def error_of(status: int, body: bytes) -> tuple[str, str]:
    """(cause, message) of an error response: the OpenAI envelope's code, or Deepgram's
    `err_code` (in lower case, so causes read alike across endpoints), where there is one."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"http_{status}", body[:200].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else f"http_{status}", str(error.get("message", ""))
    if isinstance(data, dict) and data.get("err_code"):
        return str(data["err_code"]).lower(), str(data.get("err_msg", ""))
    return f"http_{status}", json.dumps(data)[:200]
