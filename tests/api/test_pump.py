"""BodyPump: a response body made in one task of its own, at most one item ahead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import nullcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.api.pump import BodyPump


class Source:
    """Yields 0, 1, ... ``count - 1``, then raises ``fail`` if set; records its tasks."""

    def __init__(self, count: int, fail: Exception | None = None, delay: float = 0.0) -> None:
        self.count, self.fail, self.delay = count, fail, delay
        self.made = 0
        self.tasks: set[asyncio.Task[object] | None] = set()
        self.closed = False
        self.closed_in: asyncio.Task[object] | None = None

    async def __call__(self) -> AsyncGenerator[int, None]:
        try:
            for i in range(self.count):
                self.tasks.add(asyncio.current_task())
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.made += 1
                yield i
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True
            self.closed_in = asyncio.current_task()


@settings(max_examples=30, deadline=None)
@given(count=st.integers(0, 12), fails=st.booleans(), reader_pauses=st.booleans())
async def test_items_in_order_then_the_end_or_the_failure(
    count: int, fails: bool, reader_pauses: bool
) -> None:
    source = Source(count, RuntimeError("boom") if fails else None)
    pump = BodyPump(source())
    got: list[int] = []
    with pytest.raises(RuntimeError, match="boom") if fails else nullcontext():
        async for item in pump:
            got.append(item)
            if reader_pauses:
                await asyncio.sleep(0.001)
    assert got == list(range(count))
    await pump.aclose()
    assert source.closed
    # One task made the whole body, and it is not the reader's.
    assert source.tasks <= {pump._task} and asyncio.current_task() not in source.tasks


async def test_makes_at_most_one_item_ahead_of_a_reader_that_does_not_read() -> None:
    source = Source(100)
    pump = BodyPump(source())
    for taken in range(1, 4):
        assert await anext(pump) == taken - 1
        await asyncio.sleep(0.01)  # plenty of time to run ahead, were it allowed to
        assert source.made == taken + 1
    await pump.aclose()
    assert source.closed


async def test_cancelling_the_reader_leaves_the_body_running_until_aclose() -> None:
    source = Source(5, delay=0.05)
    pump = BodyPump(source())
    reader = asyncio.create_task(anext(pump))
    await asyncio.sleep(0.01)
    reader.cancel()  # the client left: the response's send loop is cancelled
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.sleep(0.06)
    assert source.made == 1 and not source.closed  # the body went on in its own task
    await pump.aclose()
    assert source.closed and source.closed_in is pump._task  # closed in its own task


async def test_aclose_before_the_first_item_closes_the_source() -> None:
    source = Source(3)
    gen = source()
    await anext(gen)  # started: its finally must run when the pump closes it
    pump = BodyPump(gen)
    await pump.aclose()
    assert source.closed


async def test_reading_after_the_end_stays_at_the_end() -> None:
    pump = BodyPump(Source(1)())
    assert [item async for item in pump] == [0]
    with pytest.raises(StopAsyncIteration):
        await anext(pump)
    await pump.aclose()


async def test_abort_wakes_a_waiting_reader() -> None:
    source = Source(100, delay=0.05)
    pump = BodyPump(source())
    assert await anext(pump) == 0
    waiting = asyncio.ensure_future(anext(pump))  # waits on the source's next item
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pump.abort(ConnectionAbortedError("left"))
    with pytest.raises(ConnectionAbortedError, match="left"):
        await asyncio.wait_for(waiting, 1.0)
    await asyncio.sleep(0.12)  # the task made more meanwhile: none of it is read
    with pytest.raises(ConnectionAbortedError, match="left"):
        await anext(pump)
    await pump.aclose()
    assert source.closed and source.made < 100


async def test_abort_drops_the_item_made_ahead() -> None:
    source = Source(100)
    pump = BodyPump(source())
    assert await anext(pump) == 0
    await asyncio.sleep(0.01)  # the task made item 1 ahead of the reader
    assert source.made == 2
    pump.abort(ConnectionAbortedError("left"))
    with pytest.raises(ConnectionAbortedError, match="left"):
        await anext(pump)
    await pump.aclose()
    assert source.closed
