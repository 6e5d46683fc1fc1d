"""A response body made in one task of its own, handed to the response one chunk at a time.

The body runs apart from the response's send loop because Starlette cancels that loop
with anyio cancellation when the client leaves, and anyio's cancellation is
level-triggered: every await in the body's clean-up (closing the backend request,
withdrawing decode jobs) would be cancelled again. A task of its own gets one plain
cancellation instead (`aclose`).

One task for the whole body, not one per chunk: a chunk is about one frame (85 ms) of a
real-time stream, and a task made and awaited through a shield per chunk, with the
drain's task and `asyncio.wait` per chunk and a queue from the segment's task, cost the
event loop about a tenth at 16 real-time streams (docs/benchmarks.md, "One task per body").
The task makes at most one chunk ahead of the reader, so a client that does not read
holds the pipeline back as before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class BodyAborted(ConnectionAbortedError):
    """`BodyPump.abort` ended the body before its source did."""


class _End:
    """The body ended: with ``error``, or StopAsyncIteration when it ran out."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class BodyPump(Generic[T]):
    """`source`'s items, in order, made by one task that starts at the first `__anext__`;
    its failure reaches the reader after the items made before it."""

    def __init__(self, source: AsyncIterator[T]) -> None:
        self._source = source
        self._items: deque[T | _End] = deque()
        self._task: asyncio.Task[None] | None = None
        self._reader: asyncio.Future[None] | None = None
        """The reader waits for an item."""
        self._room: asyncio.Future[None] | None = None
        """The task waits for the reader to take the item it made ahead."""

    def __aiter__(self) -> BodyPump[T]:
        return self

    async def __anext__(self) -> T:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if not self._items:
            self._reader = reader = asyncio.get_running_loop().create_future()
            try:
                await reader
            finally:
                self._reader = None
        item = self._items.popleft()
        if not self._items:
            _wake(self._room)
        if isinstance(item, _End):
            self._items.appendleft(item)  # the end stays the end
            raise item.error
        return item

    def abort(self, error: BaseException) -> None:
        """End the body for the reader now with ``error``: items not yet read are dropped;
        the task is stopped by `aclose`."""
        self._items.clear()
        self._items.append(_End(error))
        _wake(self._reader)

    async def aclose(self) -> None:
        """Stop the task (the source is closed in it) and wait until it has ended."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:  # a task cancelled before its first step never closed it
            await aclose()

    async def _run(self) -> None:
        source = self._source
        try:
            async for item in source:
                if not self._put(item):  # the reader is busy sending: make no more than this one
                    self._room = room = asyncio.get_running_loop().create_future()
                    try:
                        await room
                    finally:
                        self._room = None
            self._put(_End(StopAsyncIteration()))
        except asyncio.CancelledError:
            self._put(_End(ConnectionAbortedError("the response body was closed")))
            raise
        except BaseException as exc:  # the reader raises it, in order
            self._put(_End(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def _put(self, item: T | _End) -> bool:
        """Queue ``item``; True when a waiting reader will take it."""
        self._items.append(item)
        return _wake(self._reader)


def _wake(waiter: asyncio.Future[None] | None) -> bool:
    """Resolve ``waiter`` if one waits; whether one did."""
    if waiter is None or waiter.done():
        return False
    waiter.set_result(None)
    return True
