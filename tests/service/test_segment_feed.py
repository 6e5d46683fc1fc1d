"""feed_pcm: segments that arrive while earlier ones stream, utterance boundaries, lookahead,
cancellation and errors — with generations that yield known samples."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audio.joins import SegmentJoiner
from app.service.segmented import (
    Boundary,
    SegmentAudio,
    SegmentEnd,
    SegmentFeed,
    feed_pcm,
    joined_pcm,
)

FADE, PAUSE = 4, 10


class Generations:
    """Segment k yields ``chunks`` chunks of 8 samples valued k + 1; records when it ran."""

    def __init__(self, chunks: int = 3, delay: float = 0.0) -> None:
        self.chunks, self.delay = chunks, delay
        self.started: list[int] = []
        self.tasks: dict[int, asyncio.Task[object] | None] = {}
        self.closed: list[int] = []
        self.fail: set[int] = set()

    async def __call__(self, k: int) -> AsyncGenerator[np.ndarray, None]:
        self.started.append(k)
        self.tasks[k] = asyncio.current_task()
        try:
            for _ in range(self.chunks):
                await asyncio.sleep(self.delay)
                if k in self.fail:
                    raise RuntimeError(f"segment {k} failed")
                yield np.full(8, k + 1, dtype=np.float32)
        finally:
            self.closed.append(k)


def joiner() -> SegmentJoiner:
    return SegmentJoiner(FADE, PAUSE)


async def collect(feed: SegmentFeed[int], gen: Generations, **kw: int) -> list[object]:
    out: list[object] = []
    async with aclosing(feed_pcm(feed, gen, joiner, **kw)) as events:
        async for event in events:
            out.append(event)
    return out


def audio(events: list[object], segment: int | None = None) -> np.ndarray:
    parts = [
        e.pcm
        for e in events
        if isinstance(e, SegmentAudio) and (segment is None or e.segment == segment)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


async def test_segments_put_while_streaming_are_joined_in_order() -> None:
    gen = Generations(delay=0.01)
    feed = SegmentFeed[int]()

    async def writer() -> None:
        feed.put(0)
        await asyncio.sleep(0.015)  # segment 0 is streaming
        feed.put(1)
        feed.put(Boundary("flush"))
        feed.close()

    task = asyncio.create_task(writer())
    events = await collect(feed, gen)
    await task
    ends = [e for e in events if isinstance(e, SegmentEnd)]
    assert [(e.segment, e.last) for e in ends] == [(0, False), (1, True)]
    assert isinstance(events[-1], Boundary) and events[-1].key == "flush"
    # Segment 0: faded out and followed by the pause; segment 1 faded in, its end exact.
    first, second = audio(events, 0), audio(events, 1)
    assert len(first) == 24 + PAUSE and not first[-PAUSE:].any() and first[23] < 1.0
    assert len(second) == 24 and second[0] < 2.0 and second[-1] == 2.0


async def test_a_boundary_ends_an_utterance_and_the_next_starts_afresh() -> None:
    gen = Generations()
    feed = SegmentFeed[int]([0, Boundary(1), 1, Boundary(2)], closed=True)
    events = await collect(feed, gen)
    # Each utterance is a response of its own: untouched edges, no pause.
    assert np.array_equal(audio(events, 0), np.full(24, 1.0, dtype=np.float32))
    assert np.array_equal(audio(events, 1), np.full(24, 2.0, dtype=np.float32))
    assert [e.key for e in events if isinstance(e, Boundary)] == [1, 2]


async def test_the_next_segment_generates_ahead_once_it_arrives() -> None:
    gen = Generations(delay=0.02)
    feed = SegmentFeed[int]()
    feed.put(0)
    slots: list[int] = []

    def extra_slot() -> object:
        slots.append(1)
        return lambda: slots.pop()

    async def writer() -> None:
        await asyncio.sleep(0.01)
        feed.put(1)
        await asyncio.sleep(0.001)
        started_ahead = gen.started.copy()
        feed.put(Boundary())
        feed.close()
        assert started_ahead == [0, 1]  # started at once, while 0 still streams

    task = asyncio.create_task(writer())
    await collect(feed, gen, lookahead=1, extra_slot=extra_slot)  # type: ignore[arg-type]
    await task
    assert not slots  # the lookahead's slot was given back


async def test_closing_cancels_every_generation() -> None:
    gen = Generations(chunks=1000, delay=0.01)
    feed = SegmentFeed[int]([0, 1, 2])
    spare = lambda: lambda: None  # noqa: E731 - a slot is always free
    async with aclosing(feed_pcm(feed, gen, joiner, lookahead=1, extra_slot=spare)) as events:
        async for event in events:
            if isinstance(event, SegmentAudio):
                break
    assert sorted(gen.started) == [0, 1] and sorted(gen.closed) == [0, 1]


async def test_a_segment_started_at_its_turn_runs_in_the_consumers_task() -> None:
    gen = Generations(chunks=3, delay=0.01)
    feed = SegmentFeed[int]([0, 1, 2], closed=True)
    spares = iter([lambda: None])  # one lookahead slot in all: segment 1 gets it, 2 does not
    spare = lambda: next(spares, None)  # noqa: E731
    await collect(feed, gen, lookahead=1, extra_slot=spare)  # type: ignore[arg-type]
    me = asyncio.current_task()
    # Segment 0 and the refused lookahead 2 ran at their turn, with no task and queue
    # between them and the stream; segment 1 was generated ahead, in a task of its own.
    assert gen.tasks[0] is me and gen.tasks[2] is me
    assert gen.tasks[1] is not me
    assert sorted(gen.closed) == [0, 1, 2]


async def test_an_error_surfaces_when_its_segment_is_reached() -> None:
    gen = Generations()
    gen.fail.add(1)
    feed = SegmentFeed[int]([0, 1, 2], closed=True)
    seen: list[object] = []
    with pytest.raises(RuntimeError, match="segment 1"):
        async with aclosing(feed_pcm(feed, gen, joiner)) as events:
            async for event in events:
                seen.append(event)
    assert len(audio(seen, 0)) == 24 + PAUSE  # segment 0 was heard whole


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2))
async def test_joined_pcm_is_the_closed_feed(count: int, lookahead: int) -> None:
    gen = Generations()
    whole = [c async for c in joined_pcm(count, gen, joiner(), lookahead=lookahead)]
    samples = np.concatenate(whole)
    assert len(samples) == count * 24 + (count - 1) * PAUSE
    assert samples[0] == 1.0 and samples[-1] == count  # the response's own edges untouched
