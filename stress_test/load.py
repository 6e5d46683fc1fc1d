"""Load shapes: `burst` (N requests, C at a time), `sweep` (closed loop at 1, 2, 4, ...
streams, each held for a duration, until the SLO breaks), `poisson` (open loop: arrivals at
a given rate). Requests are measured after each phase, so decoding the received audio never
delays the streams being timed."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stress_test.client import GatewayClient
from stress_test.corpus import TextPicker
from stress_test.exchange import Exchange, RequestSpec
from stress_test.measure import RequestResult, measure
from stress_test.slo import Slo
from stress_test.stats import Summary, summarize
from stress_test.ws import received_audio


class Progress(Protocol):
    def phase(self, description: str, total: float | None) -> None: ...

    def update(self, completed: float) -> None: ...


class NoProgress:
    def phase(self, description: str, total: float | None) -> None:
        pass

    def update(self, completed: float) -> None:
        pass


@dataclass
class Sent:
    index: int
    phase: str
    exchange: Exchange


@dataclass
class Runner:
    """Sends the requests of one run and turns what came back into results."""

    client: GatewayClient
    spec: RequestSpec
    picker: TextPicker
    pcm_rate: int = 24_000
    stall_threshold: float = 0.0
    progress: Progress = field(default_factory=NoProgress)
    started: float = field(default_factory=time.perf_counter)
    sent: int = 0

    async def send(self, phase: str) -> Sent:
        index = self.sent
        self.sent += 1
        text, voice = self.picker.pick()
        return Sent(index, phase, await self.client.synthesize(self.spec, text, voice))

    def measure(self, sent: Sequence[Sent]) -> list[RequestResult]:
        audio_format, rate = received_audio(self.spec, self.pcm_rate)
        return [
            measure(
                s.exchange,
                index=s.index,
                phase=s.phase,
                run_started=self.started,
                response_format=audio_format,
                pcm_rate=rate,
                stall_threshold=self.stall_threshold,
            )
            for s in sorted(sent, key=lambda s: s.index)
        ]

    async def warmup(self, count: int) -> list[RequestResult]:
        """`count` requests one after another, reported apart (first loads, caches)."""
        self.progress.phase("warm-up", count)
        sent = []
        for done in range(count):
            sent.append(await self.send("warmup"))
            self.progress.update(done + 1)
        return self.measure(sent)


async def burst(runner: Runner, requests: int, concurrency: int) -> list[RequestResult]:
    """`requests` requests, at most `concurrency` in flight (all at once by default)."""
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0
    runner.progress.phase(f"burst ×{requests}, {concurrency} at a time", requests)

    async def one() -> Sent:
        nonlocal done
        async with gate:
            sent = await runner.send("measure")
        done += 1
        runner.progress.update(done)
        return sent

    return runner.measure(await asyncio.gather(*(one() for _ in range(requests))))


@dataclass
class Level:
    concurrency: int
    duration: float
    results: list[RequestResult]
    summary: Summary


def doubling(maximum: int) -> list[int]:
    """1, 2, 4, ... up to `maximum` (which is included)."""
    levels, level = [], 1
    while level < maximum:
        levels.append(level)
        level *= 2
    return [*levels, maximum]


async def _ticking(progress: Progress, seconds: float, work: Awaitable[list[Sent]]) -> list[Sent]:
    """Run `work` while the progress bar shows the time held so far."""
    start = time.monotonic()

    async def tick() -> None:
        while True:
            progress.update(min(seconds, time.monotonic() - start))
            await asyncio.sleep(0.25)

    ticker = asyncio.create_task(tick())
    try:
        return await work
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        progress.update(seconds)


async def sweep(
    runner: Runner,
    levels: Sequence[int],
    duration: float,
    slo: Slo,
    *,
    keep_going: bool = False,
    on_level: Callable[[Level], None] | None = None,
) -> list[Level]:
    """Closed loop: at each level, that many streams send request after request for
    `duration` seconds; stop after the first level whose p99 misses the SLO."""
    done: list[Level] = []
    for concurrency in levels:
        phase = f"c={concurrency}"
        deadline = time.monotonic() + duration

        async def stream(phase: str = phase, deadline: float = deadline) -> list[Sent]:
            sent = []
            while time.monotonic() < deadline:
                sent.append(await runner.send(phase))
            return sent

        async def level(concurrency: int = concurrency) -> list[Sent]:
            batches = await asyncio.gather(*(stream() for _ in range(concurrency)))
            return [s for batch in batches for s in batch]

        runner.progress.phase(f"sweep {phase}, {duration:g} s", duration)
        results = runner.measure(await _ticking(runner.progress, duration, level()))
        done.append(Level(concurrency, duration, results, summarize(results, slo)))
        if on_level is not None:
            on_level(done[-1])
        if not done[-1].summary.meets_slo and not keep_going:
            break
    return done


def capacity(levels: Sequence[Level]) -> tuple[int | None, int | None]:
    """(largest concurrency meeting the SLO before the first break, the first that broke)."""
    held: int | None = None
    for level in levels:
        if not level.summary.meets_slo:
            return held, level.concurrency
        held = level.concurrency
    return held, None


def arrivals(rate: float, duration: float, rng: random.Random) -> Iterator[float]:
    """Poisson arrival times (seconds from the start) within `duration`."""
    t = rng.expovariate(rate)
    while t < duration:
        yield t
        t += rng.expovariate(rate)


async def poisson(
    runner: Runner, rate: float, duration: float, rng: random.Random
) -> list[RequestResult]:
    """Open loop: requests arrive at `rate` per second whatever the gateway's pace."""
    schedule = list(arrivals(rate, duration, rng))
    runner.progress.phase(f"poisson {rate:g}/s for {duration:g} s", len(schedule))
    start = time.monotonic()
    done = 0

    async def one() -> Sent:
        nonlocal done
        sent = await runner.send("measure")
        done += 1
        runner.progress.update(done)
        return sent

    tasks: list[asyncio.Task[Sent]] = []
    try:
        for offset in schedule:
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        return runner.measure(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
