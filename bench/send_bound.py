"""What does bounding each write by a stall timeout cost the event loop?

A real-time stream writes once per chunk, about once per frame (85 ms). Each write of a
streamed HTTP response used to run under an `asyncio.timeout` (a timer armed and
cancelled, a context entered and left), each WebSocket message under `asyncio.wait_for`
(in Python 3.11 a task for the send); a `StallWatch` (app/api/delivery.py) keeps one
timer per connection. This times, on uvloop as the gateway runs, ``--writes`` writes of
a send that completes at once (what a socket with room does), bare and under each bound,
in CPU microseconds of the loop thread per write, alternating the variants ``--rounds``
times.

    python bench/send_bound.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.api.delivery import StallWatch

TIMEOUT = 30.0


async def _send() -> None:
    """A write the transport takes at once: one suspension point, like uvicorn's send."""
    await asyncio.sleep(0)


def _variants() -> dict[str, Callable[[], Callable[[], Awaitable[None]]]]:
    async def bare() -> None:
        await _send()

    async def with_timeout() -> None:
        async with asyncio.timeout(TIMEOUT):
            await _send()

    async def with_wait_for() -> None:
        await asyncio.wait_for(_send(), TIMEOUT)

    def watched() -> Callable[[], Awaitable[None]]:
        watch = StallWatch(TIMEOUT, TimeoutError)
        return lambda: watch(_send())

    return {
        "bare": lambda: bare,
        "asyncio.timeout": lambda: with_timeout,
        "asyncio.wait_for": lambda: with_wait_for,
        "StallWatch": watched,
    }


async def _time(write: Callable[[], Awaitable[None]], writes: int) -> float:
    started = time.thread_time()
    for _ in range(writes):
        await write()
    return (time.thread_time() - started) / writes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    variants = _variants()
    times: dict[str, list[float]] = {name: [] for name in variants}

    async def run() -> None:
        for _ in range(args.rounds):
            for name, make in variants.items():
                times[name].append(await _time(make(), args.writes))

    uvloop.run(run())
    bare = statistics.median(times["bare"])
    for name, values in times.items():
        median = statistics.median(values)
        extra = median - bare
        print(f"{name:>17}: {median:6.2f} us CPU a write, {extra:+6.2f} us over a bare send")


if __name__ == "__main__":
    main()
