"""Writing to a client that has to keep reading: the stall timeout, and aborting a connection.

An ASGI `send` blocks while the socket's buffers are full (uvicorn's flow control), so
a client that stops reading would hold its stream slot and backend request for good.
A `StallWatch` bounds each write of one connection: a write the client has not taken
within `CLIENT_STALL_TIMEOUT` ends it with `ClientStalled` (or the caller's error). A
client reading at playback pace never waits that long for a write: the transport
resumes writing as soon as it has passed on ~48 KiB, a second or a few of audio at the
lowest bitrates.

A stream that ends badly after its response started must not end like a complete one,
and a client that stopped reading must not keep the socket and its buffered bytes:
`abort_connection` drops the connection through the server's `ABORT_EXTENSION`
(`app.api.http_server`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from starlette.types import Scope

from app.errors import GatewayError

T = TypeVar("T")

ABORT_EXTENSION: Final = "gateway.connection.abort"
"""Scope extension: an async callable that drops the connection without a clean end."""


class ClientStalled(GatewayError):
    """The client accepted nothing for the stall timeout; its stream was ended."""

    status_code = 408
    error_type = "invalid_request_error"
    default_code = "client_stalled"


_TIMER_SLACK: Final = 0.01


class StallWatch:
    """Bounds each write of one connection by ``timeout`` seconds (None or 0: no bound);
    a write that waits longer is cancelled and raises ``stalled()``.

    One timer a connection, not one per write: a real-time stream writes about once per
    frame (85 ms), and an `asyncio.timeout` per write (a timer armed and cancelled, a
    context entered and left) cost ~6 µs of loop CPU a write, `asyncio.wait_for` ~9
    (docs/benchmarks.md, "One stall timer a connection"). The timer, when it fires,
    checks the write in progress: started too long ago, it is cancelled; else the timer
    is set again for that write's limit; no write in progress, it is set again by the
    next write. Writes are taken one at a time.
    """

    def __init__(self, timeout: float | None, stalled: Callable[[], BaseException]) -> None:
        self._timeout = timeout or 0.0
        self._stalled = stalled
        self._since: float | None = None
        """Loop time the write in progress started."""
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    async def __call__(self, write: Awaitable[T]) -> T:
        if not self._timeout:
            return await write
        if self._since is not None:
            raise RuntimeError("StallWatch takes one write at a time")
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task, self._since = task, loop.time()
        if self._timer is None:
            self._timer = loop.call_at(self._since + self._timeout, self._check)
        cancelling = task.cancelling()
        try:
            return await write
        except asyncio.CancelledError:
            # Only our own cancellation becomes a stall; anyone else's goes on.
            if self._expired and task.uncancel() <= cancelling:
                raise self._stalled() from None
            raise
        finally:
            self._since, self._task, self._expired = None, None, False

    def close(self) -> None:
        """Stop the timer (the connection ended): it holds this watch until it fires."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        since, task = self._since, self._task
        if since is None or task is None or self._expired:
            return  # nothing waits: the next write sets the timer
        due = since + self._timeout
        loop = asyncio.get_running_loop()
        if loop.time() < due - _TIMER_SLACK:  # timers fire up to a clock tick early
            self._timer = loop.call_at(due, self._check)
            return
        self._expired = True
        task.cancel()


def client_stalled(timeout: float | None) -> Callable[[], ClientStalled]:
    """The HTTP error of a write that waited ``timeout`` seconds."""
    return lambda: ClientStalled(
        f"The client took no data for {timeout:g} s (CLIENT_STALL_TIMEOUT)."
    )


async def abort_connection(scope: Scope) -> bool:
    """Drop the request's connection at once (buffered bytes discarded); False when the
    server offers no way to (then only raising out of the app ends the transfer)."""
    abort: Callable[[], Awaitable[None]] | None = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if abort is None:
        return False
    await abort()
    return True
