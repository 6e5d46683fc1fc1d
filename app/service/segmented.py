"""One response from several generations: segments generated ahead, streamed in order.

A long input is spoken as segments (app/text/segments.py), each its own backend
request. While segment k streams, up to ``lookahead`` later segments are already
generating (their audio waits in memory), so each one's audio is ready when the one
before it ends. A lookahead generation needs a free stream slot (``extra_slot``) and a
backend that takes it; where either is refused, that segment simply starts when its
turn comes. Closing the response cancels every segment still generating.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field

import numpy as np

from app.audio.joins import SegmentJoiner
from app.errors import Overloaded

log = logging.getLogger(__name__)

Pcm = np.ndarray
Release = Callable[[], None]
ExtraSlot = Callable[[], Release | None]
"""Takes a stream slot if one is free, returning its release; None when none is."""


class _Refused(Exception):
    """A lookahead generation the backend had no room for."""


@dataclass(eq=False)
class _Run:
    """A segment's generation in a task of its own, its audio queued for the consumer."""

    index: int
    queue: asyncio.Queue[Pcm | BaseException | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    release: Release | None = None
    started_audio: bool = False
    deferred: bool = False
    """Refused as a lookahead (no slot or backend capacity): it runs when its turn comes."""


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
    runs: dict[int, _Run] = {}

    def start(index: int, *, ahead: bool) -> None:
        run = runs.setdefault(index, _Run(index))
        if run.task is not None:
            return
        if ahead:
            release = extra_slot() if extra_slot is not None else None
            if release is None:
                run.deferred = True
                return
            run.release = release
        run.deferred = False
        run.task = asyncio.create_task(_produce(run, generate(index), ahead=ahead))

    try:
        for index in range(count):
            start(index, ahead=False)
            for later in range(index + 1, min(count, index + 1 + lookahead)):
                start(later, ahead=True)
            run = runs[index]
            while True:
                item = await run.queue.get()
                if item is None:
                    break
                if isinstance(item, _Refused):
                    # Refused as a lookahead before any audio: now it is this one's turn.
                    _finish(run)
                    run.task = None
                    start(index, ahead=False)
                    continue
                if isinstance(item, BaseException):
                    raise item
                out = joiner.push(item, last=index == count - 1)
                if out.size:
                    yield out
            _finish(run)
            tail = joiner.end_segment(last=index == count - 1)
            if tail.size:
                yield tail
    finally:
        await _cancel(runs.values())


async def _produce(run: _Run, chunks: AsyncGenerator[Pcm, None], *, ahead: bool) -> None:
    try:
        async with aclosing(chunks):
            async for pcm in chunks:
                run.started_audio = True
                run.queue.put_nowait(pcm)
    except Overloaded as exc:
        if ahead and not run.started_audio:
            log.info(
                "segment %d: no room to generate ahead (%s); it waits its turn", run.index, exc
            )
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
