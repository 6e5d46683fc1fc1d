"""Graceful shutdown: on SIGTERM stop admitting, let live streams finish, then exit.

The first SIGTERM starts a drain instead of uvicorn's immediate shutdown: the server
keeps listening, `/ready` answers 503 so the load balancer routes elsewhere, a new
synthesis gets 503 `shutting_down` (with `Retry-After`, which the OpenAI SDK
retries), and streams already admitted run to their end. Whatever still runs after
`SHUTDOWN_GRACE_SECONDS` is aborted cleanly — an SSE stream gets a final `error`
event, an audio stream an aborted transfer, the backend request is closed — and
only then does uvicorn's own shutdown run. A second SIGTERM, or SIGINT, exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

from app.errors import GatewayError

log = logging.getLogger(__name__)

_TICK = 0.05
ABORT_WAIT_SECONDS = 5.0
"""How long aborted streams get to close down before the exit goes ahead anyway."""


class ShuttingDown(GatewayError):
    status_code = 503
    default_code = "shutting_down"


class Drain:
    def __init__(self, grace: float, live_streams: Callable[[], int]) -> None:
        self.grace = grace
        self._live = live_streams
        self.draining = False
        self.aborting = asyncio.Event()
        self._reading: set[asyncio.Task[Any]] = set()
        """Tasks waiting on an `abortable` source now."""
        self._cancelled: set[asyncio.Task[Any]] = set()
        """Of those, the ones the abort cancelled."""

    def refuse_if_draining(self) -> None:
        if self.draining:
            raise ShuttingDown(
                "The gateway is shutting down; retry shortly (another replica will answer).",
                headers={"Retry-After": "1"},
            )

    async def run(self) -> None:
        """Wait for live streams to end, abort the rest after the grace period."""
        self.draining = True
        log.info("draining: %d live streams, up to %g s", self._live(), self.grace)
        if not await self._idle_within(self.grace):
            log.warning("aborting %d streams still live after %g s", self._live(), self.grace)
            self._abort_readers()
            await self._idle_within(ABORT_WAIT_SECONDS)
        log.info("drained")

    async def _idle_within(self, seconds: float) -> bool:
        # Polled: slots are freed from many places, and 50 ms is nothing next to the grace.
        deadline = asyncio.get_running_loop().time() + seconds
        for _ in range(math.ceil(seconds / _TICK) + 1):
            if not self._live():
                return True
            await asyncio.sleep(min(_TICK, max(0.0, deadline - asyncio.get_running_loop().time())))
        return not self._live()

    async def abortable(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`source`'s items until the drain aborts, then `ShuttingDown` from where it waits.

        The abort cancels the task that waits on `source` (once, and only while it waits
        there), rather than racing each item against the drain: this runs once per chunk
        of every stream, and a task and an `asyncio.wait` per chunk cost more than the rest
        of the hand-over."""
        task = asyncio.current_task()
        assert task is not None
        while True:
            if self.aborting.is_set():
                raise self._shut_down()
            self._reading.add(task)
            try:
                item = await anext(source)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if task not in self._cancelled:
                    raise  # not ours: the client left, or the server stops
                self._cancelled.discard(task)
                task.uncancel()
                raise self._shut_down() from None
            finally:
                self._reading.discard(task)
            yield item

    def _abort_readers(self) -> None:
        self.aborting.set()
        self._cancelled |= self._reading
        for task in self._reading:
            task.cancel()

    def _shut_down(self) -> ShuttingDown:
        return ShuttingDown(
            f"The gateway shut down before the stream ended "
            f"(SHUTDOWN_GRACE_SECONDS={self.grace:g})."
        )


def install_sigterm_drain(drain: Drain) -> Callable[[], None] | None:
    """Make SIGTERM drain first, then hand over to the server's own handler. Only in the
    main thread (a test server in a thread keeps its default); returns an uninstaller."""
    if threading.current_thread() is not threading.main_thread():
        return None
    loop = asyncio.get_running_loop()
    server_handler = signal.getsignal(signal.SIGTERM)
    tasks: set[asyncio.Task[None]] = set()

    def hand_over(_: object = None) -> None:
        signal.signal(signal.SIGTERM, server_handler)
        if callable(server_handler):
            server_handler(signal.SIGTERM, None)

    def start() -> None:
        task = loop.create_task(drain.run())
        tasks.add(task)
        task.add_done_callback(hand_over)

    def on_sigterm(signum: int, frame: FrameType | None) -> Any:
        if drain.draining:  # a second SIGTERM: do not wait any longer
            loop.call_soon_threadsafe(hand_over)
            return
        drain.draining = True  # at once: the next /ready must already fail
        loop.call_soon_threadsafe(start)

    signal.signal(signal.SIGTERM, on_sigterm)

    def uninstall() -> None:
        signal.signal(signal.SIGTERM, server_handler)

    return uninstall
