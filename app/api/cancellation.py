"""Race a handler's pre-response work against the client's disconnect (as vLLM does)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client left before the response was committed."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it as soon as the client disconnects.

    Only for use after the request body was read: the next ASGI message is then
    `http.disconnect`, and nothing else is consumed.
    """
    task: asyncio.Future[T] = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher: asyncio.Future[None] = asyncio.ensure_future(watch())
    try:
        racers: list[asyncio.Future[Any]] = [task, watcher]
        await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # Let the work unwind before the caller closes what it was using.
            await asyncio.gather(task, return_exceptions=True)
            raise ClientDisconnected
    return task.result()
