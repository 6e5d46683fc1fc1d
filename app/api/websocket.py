"""What every WebSocket session surface shares: one writer, timers, close codes.

A surface (app/api/ws_native.py, app/api/deepgram.py) is a `SessionHandler`: it parses the
client's messages into calls on a `SynthesisSession` and renders the session's events in
its protocol. `run_session` drives it with three tasks: a reader (client messages), a
writer (session events, through one `Sender`) and a watch (keepalives, the idle timeout,
the shutdown drain). The first to end decides the close; the others are cancelled, and
closing the session cancels its generations down to the backend requests.

A client that reads nothing stalls its own session only: the session's event queue is
bounded, the writer waits on the socket, and after WS_SEND_TIMEOUT_SECONDS without a send
completing the session ends (close 1008) and frees its slot. uvicorn's own limits bound
what it holds: one incoming message at a time (reading pauses until the app takes it),
WS_MAX_MESSAGE_BYTES per message (1009 beyond) and its write buffer's high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import WebSocket

from app.api import deps
from app.api.delivery import StallWatch
from app.api.draining import ShuttingDown
from app.config import Settings
from app.errors import GatewayError, Overloaded

log = logging.getLogger(__name__)

NORMAL, GOING_AWAY, POLICY, INTERNAL, RESTART, TRY_LATER = 1000, 1001, 1008, 1011, 1012, 1013
CLOSE_TIMEOUT = 2.0
"""How long a close may wait on a client; a stalled one is left to the transport."""


def uvicorn_ws_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket settings for the gateway (`python -m app`, workers, tests)."""
    return {
        # websockets' sans-I/O implementation: write back-pressure and keepalive pings.
        "ws": "websockets-sansio",
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
    }


class CloseSession(Exception):
    """End the session: ``error`` is reported in-band first (when the protocol does)."""

    def __init__(self, code: int, reason: str = "", error: GatewayError | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.error = error


class ClientStalled(Exception):
    """A send made no progress within the send timeout: the client does not read."""


class IdleTimeout(GatewayError):
    status_code = 408
    error_type = "invalid_request_error"
    default_code = "idle_timeout"


def close_code(exc: BaseException) -> int:
    """The close code a session failure ends with."""
    if isinstance(exc, ShuttingDown):
        return RESTART
    if isinstance(exc, Overloaded):
        return TRY_LATER
    if isinstance(exc, GatewayError) and 400 <= exc.status_code < 500:
        return POLICY
    return INTERNAL


class Sender:
    """The one path to the client: in order, each send bounded by the send timeout."""

    def __init__(self, websocket: WebSocket, timeout: float) -> None:
        self._websocket = websocket
        # One timer for the connection: an audio message goes out about once per frame.
        self._watch = StallWatch(timeout, ClientStalled)
        self._lock = asyncio.Lock()
        self.last_sent = time.monotonic()

    async def json(self, payload: dict[str, Any]) -> None:
        await self._send(self._websocket.send_json(payload))

    async def bytes(self, data: bytes) -> None:
        await self._send(self._websocket.send_bytes(data))

    async def _send(self, sending: Awaitable[None]) -> None:
        async with self._lock:
            await self._watch(sending)
            self.last_sent = time.monotonic()

    def close(self) -> None:
        """Stop the send timer: the session ended."""
        self._watch.close()


class SessionHandler(Protocol):
    sender: Sender

    @property
    def busy(self) -> bool:
        """Whether the session has work in flight (it is then not idle)."""
        ...

    async def on_message(self, text: str | None, data: bytes | None) -> None:
        """One client message; raises CloseSession to end the session."""
        ...

    async def pump(self) -> None:
        """Send the session's events until it ends (returns) or fails (CloseSession)."""
        ...

    def error_message(self, error: GatewayError) -> dict[str, Any] | None:
        """The protocol's in-band error (None: the protocol sends none for it)."""
        ...

    def keepalive(self) -> dict[str, Any] | None: ...

    async def aclose(self) -> None:
        """Cancel whatever the session still runs."""
        ...


async def run_session(
    websocket: WebSocket,
    handler: SessionHandler,
    settings: Settings,
    *,
    on_end: Callable[[int], None] | None = None,
) -> None:
    """Drive an accepted session until it ends; close with the code its end calls for.
    ``on_end`` gets that code (1005: the client closed or left)."""
    drain = deps.drain(websocket)
    heard = time.monotonic()

    async def read() -> str:
        nonlocal heard
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return _LEFT
            heard = time.monotonic()
            await handler.on_message(message.get("text"), message.get("bytes"))

    async def pump() -> str:
        await handler.pump()
        return _FINISHED

    async def watch() -> CloseSession:
        nonlocal heard
        idle, every = settings.ws_idle_timeout_seconds, settings.ws_keepalive_seconds
        tick = min(1.0, idle / 4, every / 2 if every else 1.0)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if handler.busy:
                heard = now
            if drain is not None and (
                drain.aborting.is_set() or (drain.draining and not handler.busy)
            ):
                stop = ShuttingDown("The gateway is shutting down; reconnect to another replica.")
                return CloseSession(RESTART, "shutting down", stop)
            if now - heard > idle:
                quiet = IdleTimeout(f"Nothing to speak for {idle:g} s: the session closed.")
                return CloseSession(NORMAL, "idle timeout", quiet)
            payload = handler.keepalive() if every else None
            if payload is not None and now - handler.sender.last_sent >= every:
                await handler.sender.json(payload)

    tasks: list[asyncio.Future[str | CloseSession]] = [
        asyncio.ensure_future(read()),
        asyncio.ensure_future(pump()),
        asyncio.ensure_future(watch()),
    ]
    code = 1005
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = next(task for task in tasks if task in done)
        code = await _close(websocket, handler, first.exception() or first.result())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        handler.sender.close()
        await handler.aclose()
        if on_end is not None:
            on_end(code)


_LEFT, _FINISHED = "left", "finished"


async def _close(
    websocket: WebSocket, handler: SessionHandler, outcome: BaseException | CloseSession | str
) -> int:
    """Report the outcome in-band where there is one to report, then close."""
    error: GatewayError | None = None
    if outcome == _LEFT:
        return 1005
    if outcome == _FINISHED:
        code, reason = NORMAL, ""
    elif isinstance(outcome, ClientStalled):
        log.warning("websocket client reads nothing: session ended")
        code, reason = POLICY, "client not reading"
    elif isinstance(outcome, CloseSession):
        code, reason, error = outcome.code, outcome.reason, outcome.error
    elif isinstance(outcome, GatewayError):
        code, reason, error = close_code(outcome), outcome.code or "", outcome
    else:
        log.error(
            "websocket session failed",
            exc_info=outcome if isinstance(outcome, BaseException) else None,
        )
        code, reason = INTERNAL, "internal error"
    payload = handler.error_message(error) if error is not None else None
    # A stalled client cannot take these: the transport is left to uvicorn.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            if payload is not None:
                await websocket.send_json(payload)
            await websocket.close(code, reason)
    return code
