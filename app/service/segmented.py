"""One stream from several generations: segments generated ahead, streamed in order.

A long input is spoken as segments (app/text/segments.py), each its own backend
request. While segment k streams, up to ``lookahead`` later segments are already
generating (their audio waits in memory), so each one's audio is ready when the one
before it ends. A lookahead generation needs a free stream slot (``extra_slot``) and a
backend that takes it; where either is refused, that segment simply starts when its
turn comes. Closing the stream cancels every segment still generating.

The segments come from a `SegmentFeed`: all at once for an HTTP request (`joined_pcm`),
or over time for a WebSocket session, where text arrives as an LLM writes it. A feed may
hold `Boundary` marks between segments (the end of an utterance: a flush): the segment
before one ends as a response ends (no fade, no pause) and the next starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Hashable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from app.audio.joins import SegmentJoiner
from app.errors import Overloaded

log = logging.getLogger(__name__)

Pcm = np.ndarray
Release = Callable[[], None]
ExtraSlot = Callable[[], Release | None]
"""Takes a stream slot if one is free, returning its release; None when none is."""
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, eq=False)
class Boundary:
    """The end of an utterance in a feed; ``key`` is the caller's (a flush's id)."""

    key: object = None


@dataclass(frozen=True)
class SegmentAudio(Generic[K]):
    segment: K
    pcm: Pcm


@dataclass(frozen=True)
class SegmentEnd(Generic[K]):
    """All of ``segment``'s audio was yielded (its faded tail and the pause included)."""

    segment: K
    last: bool
    """It ended an utterance: nothing of it was faded, no pause follows."""


class SegmentFeed(Generic[K]):
    """Segments (and boundaries) in speaking order; `put` may go on while they stream."""

    def __init__(self, entries: Iterable[K | Boundary] = (), *, closed: bool = False) -> None:
        self._entries: deque[K | Boundary] = deque(entries)
        self._changed = asyncio.Event()
        self.closed = closed
        self.on_put: Callable[[], None] | None = None
        """Called after each `put` (the consumer starts lookahead generations)."""

    def put(self, entry: K | Boundary) -> None:
        if self.closed:
            raise RuntimeError("the feed is closed")
        self._entries.append(entry)
        self._changed.set()
        if self.on_put is not None:
            self.on_put()

    def close(self) -> None:
        """No more entries: the stream ends after the last one."""
        self.closed = True
        self._changed.set()

    def __len__(self) -> int:
        return len(self._entries)

    def upcoming(self, count: int) -> list[K]:
        """The next ``count`` segments queued (boundaries skipped)."""
        return [e for e in self._entries if not isinstance(e, Boundary)][:count]

    def ends_utterance(self) -> bool:
        """Whether the segment just taken is the last of its utterance, as far as known now."""
        if self._entries:
            return isinstance(self._entries[0], Boundary)
        return self.closed

    async def take(self) -> K | Boundary | None:
        """The next entry, waiting for one; None once the feed is closed and empty."""
        while not self._entries:
            if self.closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        return self._entries.popleft()


class _Refused(Exception):
    """A lookahead generation the backend had no room for."""


@dataclass(eq=False)
class _Run:
    """A segment's generation in a task of its own, its audio queued for the consumer."""

    key: object
    queue: asyncio.Queue[Pcm | BaseException | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    release: Release | None = None
    started_audio: bool = False


async def joined_pcm(
    count: int,
    generate: Callable[[int], AsyncGenerator[Pcm, None]],
    joiner: SegmentJoiner,
    *,
    lookahead: int = 1,
    extra_slot: ExtraSlot | None = None,
) -> AsyncGenerator[Pcm, None]:
    """The audio of segments ``0 .. count-1`` (``generate(k)`` yields segment k's PCM), in
    order and joined; errors surface when the segment that raised them is reached."""
    feed = SegmentFeed[int](range(count), closed=True)
    events = feed_pcm(feed, generate, lambda: joiner, lookahead=lookahead, extra_slot=extra_slot)
    async with aclosing(events):
        async for event in events:
            if isinstance(event, SegmentAudio):
                yield event.pcm


async def feed_pcm(
    feed: SegmentFeed[K],
    generate: Callable[[K], AsyncGenerator[Pcm, None]],
    new_joiner: Callable[[], SegmentJoiner],
    *,
    lookahead: int = 1,
    extra_slot: ExtraSlot | None = None,
) -> AsyncGenerator[SegmentAudio[K] | SegmentEnd[K] | Boundary, None]:
    """The joined audio of the feed's segments as they come, each segment's end, and each
    boundary when reached; ends when the feed is closed and spoken. A new joiner starts
    each utterance."""
    runs: dict[object, _Run] = {}
    current: list[K] = []

    def start_ahead(key: K) -> None:
        run = runs.setdefault(key, _Run(key))
        if run.task is not None:
            return
        release = extra_slot() if extra_slot is not None else None
        if release is None:
            return  # refused as a lookahead: it starts when its turn comes
        run.release = release
        run.task = asyncio.create_task(_produce(run, generate(key)))

    def top_up() -> None:
        if current:
            for later in feed.upcoming(lookahead):
                start_ahead(later)

    feed.on_put = top_up
    joiner = new_joiner()
    try:
        while (entry := await feed.take()) is not None:
            if isinstance(entry, Boundary):
                yield entry
                joiner = new_joiner()
                continue
            current[:] = [entry]
            top_up()
            inline = True
            run = runs.get(entry)
            if run is not None:
                if run.task is not None:  # generated ahead: take what it made
                    inline = False
                    while (item := await run.queue.get()) is not None:
                        if isinstance(item, _Refused):  # no room ahead, and no audio: its turn
                            inline = True
                            break
                        if isinstance(item, BaseException):
                            raise item
                        out = joiner.push(item, last=feed.ends_utterance())
                        if out.size:
                            yield SegmentAudio(entry, out)
                _finish(run)
                del runs[entry]
            if inline:
                # Its turn: generated in this task, not one of its own with a queue between
                # (a hand-over per frame of every stream).
                async with aclosing(generate(entry)) as chunks:
                    async for pcm in chunks:
                        out = joiner.push(pcm, last=feed.ends_utterance())
                        if out.size:
                            yield SegmentAudio(entry, out)
            current.clear()  # idle until the next take: what arrives now is not "ahead"
            last = feed.ends_utterance()
            tail = joiner.end_segment(last=last)
            if tail.size:
                yield SegmentAudio(entry, tail)
            yield SegmentEnd(entry, last)
    finally:
        feed.on_put = None
        await _cancel(runs.values())


async def _produce(run: _Run, chunks: AsyncGenerator[Pcm, None]) -> None:
    """A lookahead generation: its audio, or its failure, queued for the consumer."""
    try:
        async with aclosing(chunks):
            async for pcm in chunks:
                run.started_audio = True
                run.queue.put_nowait(pcm)
    except Overloaded as exc:
        if not run.started_audio:
            log.info("segment %r: no room to generate ahead (%s); it waits its turn", run.key, exc)
            run.queue.put_nowait(_Refused())
            return
        run.queue.put_nowait(exc)
        return
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # delivered in order, to the consumer
        run.queue.put_nowait(exc)
        return
    run.queue.put_nowait(None)


def _finish(run: _Run) -> None:
    if run.release is not None:
        run.release()
        run.release = None


async def _cancel(runs: Iterable[_Run]) -> None:
    pending = list(runs)
    tasks = [r.task for r in pending if r.task is not None and not r.task.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for run in pending:
        _finish(run)
