"""Streamed responses whose cleanup always runs, promptly, even when the client leaves.

Starlette cancels a streaming body with anyio cancellation when the client
disconnects. That cancellation is level-triggered: every await in the cleanup of
the body's generators (closing the backend response, withdrawing decode jobs)
would be cancelled again, leaving the backend request open until garbage
collection. So the body is made in a task of its own (`app.api.pump`), which gets
one plain cancellation, and the response's cleanup runs shielded.

The client's leaving is watched by one plain task that ends the body (`BodyPump.abort`),
not by Starlette's anyio task group per response: with its cancel scope and the
cancellation that ends it (which formats the task's repr), it cost ~300 µs of loop CPU
a request (docs/benchmarks.md, "A response's disconnect watch").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from app.api import deps
from app.api.delivery import StallWatch, abort_connection, client_stalled
from app.api.errors import log_failure
from app.api.limits import Slot
from app.api.metrics import GatewayMetrics, error_cause
from app.api.pump import BodyAborted, BodyPump
from app.errors import GatewayError
from app.service.speech import SpeechStream

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT = 10.0


class StreamLease:
    """What one admitted synthesis holds until it ends: a slot and its `SpeechStream`."""

    def __init__(
        self, slot: Slot, metrics: GatewayMetrics | None, scope: Scope | None = None
    ) -> None:
        self.slot = slot
        self.metrics = metrics
        self._scope = scope
        self.stream: SpeechStream | None = None
        self._closed = False

    async def close(self) -> None:
        """Close the stream (down to the backend request), record it, free the slot. Once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.stream is not None:
                await self.stream.aclose()
        finally:
            self.slot.release()
            stream = self.stream
            if stream is not None and self.metrics is not None:
                self.metrics.observe_stream(stream)
            if stream is not None and stream.error is not None and self._scope is not None:
                # Counted once, by the request middleware, like errors before the commit.
                self._scope.setdefault("state", {})["error_cause"] = error_cause(stream.error)


class GuardedStreamingResponse(StreamingResponse):
    """A `StreamingResponse` over `content` that calls `on_close` however it ends.

    A client that takes no bytes for `stall_timeout` seconds ends the stream
    (`app.api.delivery`). A failure after the response started — the backend, the
    codec, a stalled client, a shutdown — is logged once, with the request id and
    cause, and the connection is dropped, so the client sees a broken transfer rather
    than a short body that looks complete.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]],
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        self._pump = BodyPump(content)
        self._on_close = on_close
        self._stall_timeout = stall_timeout
        super().__init__(self._pump, media_type=media_type, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        watch = StallWatch(self._stall_timeout, client_stalled(self._stall_timeout))

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await watch(send(message))

        failure: Exception | None = None
        try:
            await self._stream_until_left(receive, tracked)
        except Exception as exc:
            if not started:
                raise  # still a proper HTTP error
            failure = exc
        finally:
            watch.close()
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True) as scope_:
                await self._cleanup()
            if scope_.cancelled_caught:
                log.error("stream cleanup did not finish within %g s", CLEANUP_TIMEOUT)
        if failure is not None:
            await _abort_after_commit(scope, failure)

    async def _stream_until_left(self, receive: Receive, send: Send) -> None:
        """`stream_response`, ended without an error when the client leaves first."""
        listener = asyncio.get_running_loop().create_task(self._end_when_left(receive))
        try:
            await self.stream_response(send)
        except BodyAborted:
            return  # the client left: nobody is there to answer
        finally:
            listener.cancel()

    async def _end_when_left(self, receive: Receive) -> None:
        await self.listen_for_disconnect(receive)
        # The send loop waits for the body or for the socket to drain, and the server
        # ends a drain when the connection is lost: the body's end reaches it either way.
        self._pump.abort(BodyAborted("the client disconnected"))

    async def _cleanup(self) -> None:
        try:
            await self._pump.aclose()
        finally:
            await self._on_close()


async def _abort_after_commit(scope: Scope, failure: Exception) -> None:
    """One log line for a stream that failed after its response started, then the
    connection dropped (raising is the fallback: the server then closes it)."""
    cause = error_cause(failure)
    scope.setdefault("state", {}).setdefault("error_cause", cause)
    if isinstance(failure, GatewayError):
        log_failure(failure, "stream aborted after the response started", always=True)
    else:
        log.error(
            "stream aborted after the response started: %s",
            cause,
            exc_info=failure,
            extra={"error_cause": cause},
        )
    if not await abort_connection(scope):
        raise failure


def admit(request: Request) -> StreamLease:
    """Take a stream slot before any backend work; 503 with `Retry-After` when none is free,
    or when the gateway is shutting down."""
    drain = deps.drain(request)
    if drain is not None:
        drain.refuse_if_draining()
    slot = deps.stream_slots(request).acquire()
    return StreamLease(slot, deps.metrics(request), request.scope)
