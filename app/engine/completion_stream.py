"""One streaming completions request on a connection of its own, parsed as bytes arrive.

vLLM sends one SSE event per token, about 82 a second per real-time stream. Read
through httpx, every event costs ~60 µs of event-loop CPU (h11 in Python and a dozen
coroutine layers resumed per read: docs/benchmarks.md, "Real-time pacing"), most of a
core at 64 streams. Here an asyncio `Protocol` feeds each read straight to httptools
(the C HTTP/1.1 parser uvicorn uses) and the SSE parser, hands the events to a sink
inside ``data_received``, and wakes the consumer only when the sink asks for it (for
Orpheus: a frame's worth of tokens). The socket's receive low-water mark
(`app.engine.low_water`) keeps the kernel from waking the loop for each token before that.

A connection serves one request (``Connection: close``): the streams are long, and
closing one drops its socket at once, so the backend sees the client leave. No proxy
support: the gateway connects to its backends directly.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Final, Protocol, cast
from urllib.parse import urlsplit

import httptools

from app.engine.low_water import LowWater
from app.engine.sse import SSEError, SSEParser

MAX_ERROR_BODY: Final = 64 * 1024
MAX_BACKLOG: Final = 16_384
"""Items the sink may hold for a consumer that does not read before reading pauses."""


class Sink(Protocol):
    def feed(self, events: list[str]) -> bool:
        """Take the ``data`` of completed SSE events; True: the consumer should look now."""
        ...

    def feed_body(self, body: bytes) -> tuple[bool, int]:
        """Take what the sink can of a body of whole SSE events without the SSE parser, as
        `feed` would: whether the consumer should look, and the bytes taken (the rest is
        parsed and fed)."""
        ...

    @property
    def backlog(self) -> int:
        """Items waiting for the consumer."""
        ...

    @property
    def wanted(self) -> int:
        """Items still to come before ``feed`` asks for the consumer (at least 1)."""
        ...


class Unreachable(Exception):
    """No response came: refused, unresolvable, timed out connecting, or reset before the
    status line. Nothing was generated, so another replica may be tried."""


class StreamBroken(Exception):
    """The response broke off or broke the HTTP or SSE framing after it had started."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str
    tls: bool

    @classmethod
    def of(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"backend URL {url!r} must be http:// or https:// with a host")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), parts.path or "/", tls)

    @property
    def authority(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class CompletionStream(asyncio.Protocol):
    """The response to one POST: `status` once the headers are in, then events to `sink`
    (or, for an error status, the body in `error_body`)."""

    def __init__(self, sink: Sink) -> None:
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._body: list[bytes] = []
        """The body of the read being parsed: a chunk of the chunked encoding per token."""
        # httptools calls this once per chunk, so once per token: a C method, not a
        # Python one (it binds its callbacks when the parser is made).
        self.on_body = self._body.append
        self._parser = httptools.HttpResponseParser(self)
        self._sse = SSEParser()
        self._transport: asyncio.Transport | None = None
        self._headers: asyncio.Future[None] = self._loop.create_future()
        self._wake: asyncio.Future[bool] | None = None
        """Resolved True by the sink's call, False when the wait's time is up."""
        self._woken = False  # the sink asked while nobody waited
        self._wake_on_read = False  # the next read ends the wait, whatever it brings
        self._paused = False
        self.status = 0
        self._framed = False  # chunked or sized: otherwise the body ends when the socket does
        self.error_body = bytearray()
        self.complete = False
        """The whole response arrived."""
        self.failure: Exception | None = None
        self.last_data = self._loop.time()
        self._low_water: LowWater | None = None
        self._patience: asyncio.TimerHandle | None = None
        """Ends a mark set during a wait (`_mark_rest`) that the bytes do not reach."""

    # --- opening -----------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        path: str,
        body: bytes,
        headers: dict[str, str],
        sink: Sink,
        *,
        connect_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> CompletionStream:
        """Connect and send the request; `Unreachable` if no connection can be made."""
        loop = asyncio.get_running_loop()
        context = (tls or ssl.create_default_context()) if endpoint.tls else None
        try:
            async with asyncio.timeout(connect_timeout):
                _, stream = await loop.create_connection(
                    lambda: cls(sink),
                    endpoint.host,
                    endpoint.port,
                    ssl=context,
                    server_hostname=endpoint.host if context else None,
                )
        except TimeoutError:
            raise Unreachable(f"no connection within {connect_timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror), TLS
            raise Unreachable(str(exc) or type(exc).__name__) from exc
        stream._send(endpoint, path, body, headers)
        return stream

    def _send(self, endpoint: Endpoint, path: str, body: bytes, headers: dict[str, str]) -> None:
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {endpoint.authority}",
            "Content-Type: application/json",
            "Accept: text/event-stream",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        assert self._transport is not None
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def response(self) -> None:
        """Wait for the status line and headers; `Unreachable` if the connection ends first."""
        await asyncio.shield(self._headers)

    # --- reading -------------------------------------------------------------------------

    async def wait(self, deadline: float) -> None:
        """Return when the sink asked for the consumer, the response ended or failed, or at
        ``deadline`` (loop time), whichever comes first."""
        if self._paused and self._sink.backlog <= MAX_BACKLOG // 2:
            self._paused = False
            self.resume()
        low = self._low_water
        ended = self.complete or self.failure is not None
        if low is not None and low.holding and not (ended or self._paused) and low.release():
            # What came while the consumer was away is in the kernel: take it too.
            self._woken = False
            self._wake_on_read = True
        if self._woken or ended:
            self._woken = False
            return
        soft = deadline
        if low is not None and not self._wake_on_read:
            patience = low.want(self._sink.wanted)
            if patience is not None:
                soft = min(deadline, self._loop.time() + patience)
        try:
            for limit in (soft, deadline) if soft < deadline else (deadline,):
                # A timer that resolves the wake-up, not asyncio.timeout: this runs once per
                # frame of every stream, and a timeout's cancel-and-translate costs more.
                self._wake = wake = self._loop.create_future()
                timer = self._loop.call_at(limit, _expire, wake)
                try:
                    woken = await wake
                finally:
                    timer.cancel()
                # The sink may have asked after the time was up, before this task resumed.
                if woken or self._woken:
                    self._woken = False
                    return
                if low is not None and limit < deadline:
                    low.hold_off()  # waited long for the mark: take what is in
        finally:
            self._wake = None
            if self._patience is not None:
                self._patience.cancel()
                self._patience = None

    @property
    def quiet_since(self) -> float:
        """When data last came (loop time); now while bytes wait unread under the low-water
        mark's hold: the consumer was away, the backend was not silent."""
        low = self._low_water
        if low is not None and low.holding and low.waiting():
            return self._loop.time()
        return self.last_data

    def pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self.last_data = self._loop.time()  # paused time is not a backend stall
            self._transport.resume_reading()

    def close(self) -> None:
        """Drop the connection now (the backend sees the client leave)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they are one.
        self._transport = cast(asyncio.Transport, transport)
        if transport.get_extra_info("ssl_object") is None:  # under TLS it counts ciphertext
            self._low_water = LowWater.of(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        self.last_data = now = self._loop.time()
        before = self._sink.backlog
        # A read that carries the headers too would make a token look larger than it is.
        events_only = self._headers.done()
        failure: StreamBroken | None = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            failure = StreamBroken("the backend switched protocols")
        except (httptools.HttpParserError, SSEError) as exc:
            failure = StreamBroken(f"malformed response: {exc}")
        try:
            self._deliver()  # what came before a broken framing is still the generation's
        except SSEError as exc:
            failure = failure or StreamBroken(f"malformed response: {exc}")
        if failure is not None:
            self._fail(failure)
        low = self._low_water
        if low is not None:
            sized = low.sized
            low.observe(len(data), self._sink.backlog - before, now, size=events_only)
            if not sized and low.sized and self._waiting and not self._wake_on_read:
                self._mark_rest(low)
        if self._wake_on_read:
            self._wake_on_read = False
            if self._low_water is not None:  # the held bytes are in: mark the next frame's
                self._low_water.want(self._sink.wanted)
            if self._wake is None or not self._wake.done():  # not woken by the sink already
                self._notify()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.complete or self.failure is not None:
            return
        if not self._headers.done():
            self._fail(Unreachable(str(exc) if exc else "connection closed before a response"))
        elif exc is None and not self._framed:
            self.on_message_complete()  # a body delimited by the end of the connection
        else:
            self._fail(StreamBroken(str(exc) if exc else "connection closed mid-response"))

    # --- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"transfer-encoding", b"content-length"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if not self._headers.done():
            self._headers.set_result(None)

    def on_message_complete(self) -> None:
        self._deliver()
        if self.status < 400:
            events = self._sse.close()
            if events:
                self._sink.feed(events)
        self.complete = True
        self._notify()
        if self._transport is not None:
            self._transport.close()

    # --- internals -------------------------------------------------------------------------

    def _deliver(self) -> None:
        """Hand the body of this read to the sink in one piece, not chunk by chunk."""
        if not self._body:
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        if self.status >= 400:
            room = MAX_ERROR_BODY - len(self.error_body)
            self.error_body += body[: max(0, room)]
            return
        look, taken = self._sink.feed_body(body) if self._sse.idle else (False, 0)
        if taken < len(body):
            events = self._sse.feed(body[taken:] if taken else body)
            if events:
                look = self._sink.feed(events) or look
        if look:
            self._notify()
            if self._wake is None and self._low_water is not None:
                self._low_water.hold()  # the consumer is away: the rest can wait for it
            if self._sink.backlog > MAX_BACKLOG and not self._paused:
                self._paused = True
                self.pause()

    @property
    def _waiting(self) -> bool:
        return self._wake is not None and not self._wake.done()

    def _mark_rest(self, low: LowWater) -> None:
        """The first read that tells a token's size came during a wait begun without a
        mark: mark the rest of the frame now, so it comes in one read and not a read per
        token, bounded by the patience that the wait would have had."""
        patience = low.want(self._sink.wanted)
        if patience is not None:
            self._patience = self._loop.call_later(patience, low.hold_off)

    def _fail(self, error: Exception) -> None:
        if self.failure is None:
            self.failure = error
        if not self._headers.done():
            self._headers.set_exception(error)
            self._headers.exception()  # retrieved: response() re-raises it
        self._notify()
        self.close()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(True)
        else:
            self._woken = True


def _expire(wake: asyncio.Future[bool]) -> None:
    if not wake.done():
        wake.set_result(False)
