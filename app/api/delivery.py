"""Writing to a client that has to keep reading: the stall timeout, and aborting a connection.

An ASGI `send` blocks while the socket's buffers are full (uvicorn's flow control), so
a client that stops reading would hold its stream slot and backend request for good.
`guard_send` bounds each write: a message the client has not taken within
`CLIENT_STALL_TIMEOUT` ends the response with `ClientStalled`. A client reading at
playback pace never waits that long for a write: the transport resumes writing as soon
as it has passed on ~48 KiB, a second or a few of audio at the lowest bitrates.
`deliver` is the same bound for any other write (a WebSocket message).

A stream that ends badly after its response started must not end like a complete one,
and a client that stopped reading must not keep the socket and its buffered bytes:
`abort_connection` drops the connection through the server's `ABORT_EXTENSION`
(`app.api.http_server`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from starlette.types import Message, Scope, Send

from app.errors import GatewayError

T = TypeVar("T")

ABORT_EXTENSION: Final = "gateway.connection.abort"
"""Scope extension: an async callable that drops the connection without a clean end."""


class ClientStalled(GatewayError):
    """The client accepted nothing for the stall timeout; its stream was ended."""

    status_code = 408
    error_type = "invalid_request_error"
    default_code = "client_stalled"


async def deliver(write: Awaitable[T], stall_timeout: float | None) -> T:
    """Await `write`, or fail with `ClientStalled` once it has waited `stall_timeout`
    seconds (None or 0: no bound)."""
    if not stall_timeout:
        return await write
    try:
        async with asyncio.timeout(stall_timeout):
            return await write
    except TimeoutError:
        raise ClientStalled(
            f"The client took no data for {stall_timeout:g} s (CLIENT_STALL_TIMEOUT)."
        ) from None


def guard_send(send: Send, stall_timeout: float | None) -> Send:
    """`send`, each message bounded by `deliver`."""
    if not stall_timeout:
        return send

    async def guarded(message: Message) -> None:
        await deliver(send(message), stall_timeout)

    return guarded


async def abort_connection(scope: Scope) -> bool:
    """Drop the request's connection at once (buffered bytes discarded); False when the
    server offers no way to (then only raising out of the app ends the transfer)."""
    abort: Callable[[], Awaitable[None]] | None = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if abort is None:
        return False
    await abort()
    return True
