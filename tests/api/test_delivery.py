"""`StallWatch`: each write bounded, with one timer for the connection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.api.delivery import ClientStalled, StallWatch, client_stalled

TIMEOUT = 0.05


class Stalled(Exception):
    pass


async def _write(seconds: float, value: str = "sent") -> str:
    await asyncio.sleep(seconds)
    return value


async def test_a_write_that_waits_too_long_is_cancelled_and_stalls() -> None:
    watch = StallWatch(TIMEOUT, Stalled)
    write = asyncio.get_running_loop().create_future()
    with pytest.raises(Stalled):
        await watch(write)
    assert write.cancelled()
    watch.close()


async def test_quick_writes_never_stall_however_long_they_go_on() -> None:
    watch = StallWatch(TIMEOUT, Stalled)
    for _ in range(12):  # 12 x 10 ms: more than two timeouts in all
        assert await watch(_write(TIMEOUT / 5)) == "sent"
    watch.close()


async def test_a_write_after_quiet_time_gets_its_own_full_timeout() -> None:
    watch = StallWatch(TIMEOUT, Stalled)
    await watch(_write(0))
    await asyncio.sleep(TIMEOUT * 0.8)  # the timer fires meanwhile with nothing to watch
    assert await watch(_write(TIMEOUT * 0.6)) == "sent"
    watch.close()


async def test_one_timer_for_many_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, callback, *args)

    monkeypatch.setattr(loop, "call_at", counting)
    watch = StallWatch(10.0, Stalled)
    for _ in range(50):
        await watch(_write(0))
    watch.close()
    assert len(armed) == 1


async def test_someone_elses_cancellation_goes_on_as_a_cancellation() -> None:
    watch = StallWatch(TIMEOUT, Stalled)
    task = asyncio.create_task(watch(asyncio.sleep(10)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    watch.close()


async def test_the_stall_leaves_the_task_uncancelled() -> None:
    watch = StallWatch(TIMEOUT, Stalled)

    async def body() -> int:
        with pytest.raises(Stalled):
            await watch(asyncio.sleep(10))
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # would raise if a cancellation were still pending
        return task.cancelling()

    assert await body() == 0
    watch.close()


async def test_no_timeout_no_bound() -> None:
    watch = StallWatch(0, Stalled)
    assert await watch(_write(TIMEOUT * 2)) == "sent"
    watch.close()


async def test_one_write_at_a_time() -> None:
    watch = StallWatch(TIMEOUT, Stalled)
    first = asyncio.create_task(watch(_write(TIMEOUT / 5)))
    await asyncio.sleep(0)
    ready = asyncio.get_running_loop().create_future()
    ready.set_result(None)
    with pytest.raises(RuntimeError):
        await watch(ready)
    assert await first == "sent"
    watch.close()


def test_the_http_error_names_the_setting() -> None:
    error = client_stalled(30.0)()
    assert isinstance(error, ClientStalled)
    assert error.status_code == 408
    assert "30 s (CLIENT_STALL_TIMEOUT)" in str(error)
