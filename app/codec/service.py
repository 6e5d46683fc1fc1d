"""The codec service: one worker thread owns SNAC, decodes every stream's windows and
encodes cloning references.

A reference is encoded a slice at a time (`encoding.SlicedEncode`, exact to one whole
encode), and only a quarter of the worker's time goes to slices while windows wait, so
a 30 s upload no longer stalls every live stream. A window that arrives while a slice
runs still waits for it, so the service times slices (the first one at start-up, on
silence) and says how long that may be (`encode_hold`): the chunk schedule then sends
chunks early enough to cover it while a reference is being encoded. At most
``max_encodes`` references are in progress at once; beyond that, `encode` refuses with 503.

Streams submit a `DecodeRequest` and await an asyncio future; the worker resolves it
through ``loop.call_soon_threadsafe``, so the event loop never runs the codec. When
the worker is free it takes what is queued (up to ``max_batch_size``, in the fair
order of `FairQueue`), waiting at most ``microsleep`` for more, and decodes requests
that `plan_groups` puts together in one codec call.

On CPU a batch costs at least as much per window as single decodes and every window
in it waits for the whole batch, so run unbatched there (docs/benchmarks.md, "Decoder
throughput"); batching is for GPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from app.codec.encoding import (
    ENCODE_SLICE_FRAMES,
    ENCODER_CONTEXT_FRAMES,
    SlicedEncode,
    SliceTimes,
    probe_clip,
)
from app.codec.fair_queue import FairQueue
from app.codec.grouping import Group, Slot, assemble, plan_groups, split
from app.codec.request import DecodeRequest
from app.codec.stats import CodecCounters, CodecStats
from app.codec.tokens import Frames
from app.errors import DecodeError, Overloaded

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]
Pcm = npt.NDArray[np.float32]
WORKER_THREAD = "snac-codec"


class FrameCodec(Protocol):
    """What the service needs of `app.codec.snac.SnacCodec`."""

    def decode_batch(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> npt.NDArray[np.float32]:
        """``(B, n * 2048)`` of ``(B, n, 7)``; with ``keep=(lo, hi), pad=X`` only frames
        ``[lo, hi)`` plus ``X`` samples each side are computed (zeros elsewhere)."""
        ...

    def encode(self, pcm: npt.ArrayLike) -> npt.NDArray[np.int64]: ...


@dataclass(eq=False)
class _Job:
    work: DecodeRequest | SlicedEncode
    """A window to decode, or a reference to encode a slice at a time."""
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Array]
    enqueued_at: float = field(default_factory=time.perf_counter)


CPU_BATCH_FRAMES: Final = 16
"""Kept frames per codec call on a CPU: one-frame windows of the real-size codec cost
20-35 % less each in batches of up to 16, four-frame windows only up to 4 (then 43 and
60 ms a frame against 39), a 22-frame window already loses in a pair
(bench/window_cost.py, bench/decode_throughput.py)."""

_ENCODE_SHARE: Final = 0.25
"""The worker's time that encode slices may take while decode windows wait."""


def _kept_frames(job: _Job) -> int:
    work = job.work
    return work.keep[1] - work.keep[0] if isinstance(work, DecodeRequest) else 0


class CodecService:
    """One per process: the only user of the codec."""

    def __init__(
        self,
        codec: FrameCodec,
        *,
        dynamic_batching: bool = True,
        max_batch_size: int = 16,
        max_batch_frames: int | None = None,
        microsleep: float = 0.002,
        queue_size: int = 1024,
        receptive_field: int = 3,
        max_padding: float = 0.25,
        torch_threads: int | None = None,
        warm_up: Callable[[Callable[[], bool]], object] | None = None,
        max_encodes: int = 2,
        encode_slice_frames: int = ENCODE_SLICE_FRAMES,
        encode_context_frames: int = ENCODER_CONTEXT_FRAMES,
    ) -> None:
        """``receptive_field``: frames of real context that make a window's kept region
        exact (3 for SNAC 24 kHz): batch padding stays farther out than that.
        ``torch_threads``: set torch's intra-op threads when the worker starts.
        ``warm_up``: prepares the codec (CUDA graphs, torch.compile) on the worker before
        it serves; it is passed a predicate that turns true when the service closes.
        ``max_encodes``: references being encoded at once (queued or running).
        ``max_batch_frames``: kept frames one codec call may decode in all (None: no
        limit); on a CPU a batch of short windows is cheaper per window, one of long
        ones dearer (its activations fall out of cache: docs/benchmarks.md)."""
        if max_batch_size < 1 or queue_size < 1 or microsleep < 0 or receptive_field < 0:
            raise ValueError(
                "max_batch_size and queue_size must be >= 1, microsleep/receptive_field >= 0"
            )
        self._codec = codec
        self._limit = max_batch_size if dynamic_batching else 1
        if max_batch_frames is not None and max_batch_frames < 1:
            raise ValueError("max_batch_frames must be >= 1")
        self._frame_budget = max_batch_frames
        self._microsleep = microsleep
        self._queue_size = queue_size
        self._receptive_field = receptive_field
        self._max_padding = max_padding
        self._torch_threads = torch_threads
        self._cond = threading.Condition()
        self._queue: FairQueue[_Job] = FairQueue()
        self._encodes: deque[_Job] = deque()
        self._max_encodes = max_encodes
        self._slicing = (encode_slice_frames, encode_context_frames)
        self._slice_due = 0.0
        self._slice_times = SliceTimes()
        self._counters = CodecCounters()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._warm_up = warm_up
        self._warming = warm_up is not None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._closing:
                raise RuntimeError("the codec service can be started once")
            self._thread = threading.Thread(target=self._work, name=WORKER_THREAD, daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Fail queued jobs, let the running batch finish, join the worker."""
        with self._cond:
            self._closing = True
            pending = [*self._queue.clear(), *self._encodes]
            self._encodes.clear()
            self._cond.notify_all()
        for job in pending:
            _resolve(job, error=_closed_error())
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def encode_hold(self) -> float:
        """Seconds a window submitted now may wait behind an encode slice: the longest
        recent slice while references are being encoded, else 0. Read without the lock
        (one float and a deque's length), as every stream asks before each plan."""
        return self._slice_times.longest if self._encodes else 0.0

    @property
    def warming(self) -> bool:
        """The worker is preparing the codec; windows queue until it is done."""
        with self._cond:
            return self._warming

    # --- submission --------------------------------------------------------------------

    def has_capacity(self, jobs: int = 1) -> bool:
        with self._cond:
            return not self._closing and self._queue.depth + jobs <= self._queue_size

    async def decode(self, request: DecodeRequest) -> Pcm:
        """PCM ``(request.length * 2048,)``: equal to ``codec.decode(request.frames)`` on the
        kept frames and ``request.pad`` samples either side; further out it may be zeros."""
        result = await self._submit(
            request, stream=request.stream, first=request.first, cost=request.length
        )
        return result.astype(np.float32, copy=False)

    async def encode(self, pcm: npt.ArrayLike) -> Frames:
        """Frames ``(n, 7)`` of mono 24 kHz PCM, encoded on the worker between windows;
        `Overloaded` (503) while ``max_encodes`` references are in progress."""
        audio = np.array(pcm, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"pcm must be mono (samples,), got {audio.shape}")
        slices, context = self._slicing
        work = SlicedEncode(audio, slice_frames=slices, context_frames=context)
        loop = asyncio.get_running_loop()
        job = _Job(work, loop, loop.create_future())
        with self._cond:
            if self._closing:
                raise _closed_error()
            if len(self._encodes) >= self._max_encodes:
                raise Overloaded(
                    f"{self._max_encodes} reference clips are being encoded; retry shortly.",
                    code="too_many_reference_encodes",
                    headers={"Retry-After": "1"},
                )
            self._encodes.append(job)
            self._cond.notify_all()
        try:
            return await job.future
        except asyncio.CancelledError:
            with self._cond:
                if job in self._encodes:  # the client left: no more slices
                    self._encodes.remove(job)
                    self._counters.cancelled += 1
            raise

    async def _submit(self, work: DecodeRequest, *, stream: int, first: bool, cost: int) -> Array:
        loop = asyncio.get_running_loop()
        job = _Job(work, loop, loop.create_future())
        with self._cond:
            if self._closing:
                raise _closed_error()
            if self._queue.depth >= self._queue_size:
                self._counters.rejected += 1
                raise Overloaded(
                    f"the decoder queue is full ({self._queue_size} windows waiting); retry later"
                )
            ticket = self._queue.push(job, stream=stream, first=first, cost=cost)
            self._cond.notify_all()
        try:
            return await job.future
        except asyncio.CancelledError:
            # The client left: a job still queued is never run.
            with self._cond:
                if self._queue.withdraw(ticket):
                    self._counters.cancelled += 1
                    self._cond.notify_all()
            raise

    # --- the worker --------------------------------------------------------------------

    def _work(self) -> None:
        _name_os_thread(WORKER_THREAD)
        if self._torch_threads is not None:
            import torch

            torch.set_num_threads(self._torch_threads)
        if self._warm_up is not None:
            try:
                self._warm_up(lambda: self._closing)
            except Exception:  # the codec still decodes, without what was not prepared
                logger.exception("decoder warm-up failed; the shapes not prepared decode eagerly")
            finally:
                with self._cond:
                    self._warming = False
        if not self._closing:
            self._time_slice()
        while True:
            jobs = self._next_jobs()
            if jobs is None:
                return
            if isinstance(jobs, _Job):
                self._encode_slice(jobs)
                continue
            try:
                self._run(jobs)
            except Exception as exc:  # a bug here must not strand the awaiting streams
                logger.exception("codec worker failed on a batch")
                for job in jobs:
                    _resolve(job, error=_decode_error(f"codec worker failed: {exc!r}", exc))

    def _next_jobs(self) -> list[_Job] | _Job | None:
        """Windows to decode, or an encode to advance by a slice; None when closing."""
        with self._cond:
            while not self._closing and self._queue.depth == 0 and not self._encodes:
                self._cond.wait()
            if self._closing:
                return None
            if self._encodes and (self._queue.depth == 0 or time.perf_counter() >= self._slice_due):
                return self._encodes[0]
            deadline = time.monotonic() + self._microsleep
            while not self._closing and 0 < self._queue.depth < self._limit:
                remaining = deadline - time.monotonic()
                arrivals = self._queue.arrivals
                if remaining <= 0 or not self._cond.wait(remaining):
                    break
                if self._queue.arrivals == arrivals:  # woken by a withdrawal, not an arrival
                    break
            if self._closing:
                return None
            jobs = self._queue.pop(self._limit, budget=self._frame_budget, weight=_kept_frames)
            now = time.perf_counter()
            for job in jobs:
                self._counters.record_wait(now - job.enqueued_at)
            return jobs

    def _run(self, jobs: list[_Job]) -> None:
        requests = [j.work for j in jobs if isinstance(j.work, DecodeRequest)]
        groups = plan_groups(
            requests, receptive_field=self._receptive_field, max_padding=self._max_padding
        )
        for group in groups:
            self._decode_group(jobs, requests, group)

    def _time_slice(self) -> None:
        """Encode a slice of silence twice, timing the second, so the first reference's
        slices are allowed for before one has run. The first call, the encoder's slowest
        (allocation, kernel selection), is then not a live one either."""
        clip = probe_clip(*self._slicing)
        try:
            self._codec.encode(clip)
            started = time.perf_counter()
            self._codec.encode(clip)
        except Exception:  # references will fail with the cause; windows still decode
            logger.exception("timing an encode slice failed")
            return
        self._slice_times.record(time.perf_counter() - started)

    def _encode_slice(self, job: _Job) -> None:
        work = job.work
        assert isinstance(work, SlicedEncode)
        started = time.perf_counter()
        try:
            work.step(self._codec.encode)
            frames = work.frames() if work.finished else None
        except Exception as exc:
            logger.exception("encoding failed")
            with self._cond:
                self._counters.errors += 1
                if job in self._encodes:
                    self._encodes.remove(job)
            _resolve(job, error=_decode_error(f"encoding the reference audio failed: {exc!r}", exc))
            return
        now = time.perf_counter()
        with self._cond:
            self._slice_times.record(now - started)
            # Windows that wait get the worker for the next (1 / share - 1) slice lengths.
            self._slice_due = now + (now - started) * (1 / _ENCODE_SHARE - 1)
            if job not in self._encodes:  # withdrawn while its slice ran
                return
            if frames is None:
                self._encodes.rotate(-1)  # encodes take turns, slice by slice
                return
            self._encodes.remove(job)
            self._counters.encodes += 1
        _resolve(job, result=frames)

    def _decode_group(self, jobs: list[_Job], requests: list[DecodeRequest], group: Group) -> None:
        try:
            batch = assemble(requests, group)
            started = time.perf_counter()
            pcm = self._codec.decode_batch(batch.frames, keep=batch.keep, pad=batch.pad)
            elapsed = time.perf_counter() - started
            outputs = split(pcm, requests, group)
        except Exception as exc:
            if len(group.slots) > 1:
                # Retry alone so one bad window (or a batch too big for the device)
                # fails only what cannot be decoded by itself.
                logger.warning("batch of %d windows failed (%r); retrying each", len(jobs), exc)
                for slot in group.slots:
                    alone = Group(requests[slot.index].length, (Slot(slot.index, 0, 0),))
                    self._decode_group(jobs, requests, alone)
                return
            request = requests[group.slots[0].index]
            logger.exception("decoding a window failed")
            with self._cond:
                self._counters.errors += 1
            message = f"decoding a window of {request.length} frames failed: {exc!r}"
            _resolve(jobs[group.slots[0].index], error=_decode_error(message, exc))
            return
        with self._cond:
            self._counters.record_batch(
                len(group.slots), group.length, group.padded_frames, elapsed
            )
        _resolve_all(
            [(jobs[slot.index], out, None) for slot, out in zip(group.slots, outputs, strict=True)]
        )

    def stats(self) -> CodecStats:
        with self._cond:
            thread = self._thread
            return self._counters.snapshot(
                queue_depth=self._queue.depth,
                queue_capacity=self._queue_size,
                queued_frames=self._queue.cost,
                running=thread is not None and thread.is_alive() and not self._closing,
            )


def _name_os_thread(name: str) -> None:
    """Give the worker its name in the OS too (top -H, /proc/<pid>/task/*/comm), so its CPU
    can be told apart from the event loop's; Python 3.11 names only its own thread object."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


_PR_SET_NAME: Final = 15


def _decode_error(message: str, cause: Exception) -> DecodeError:
    error = DecodeError(message)
    error.__cause__ = cause
    return error


def _closed_error() -> Overloaded:
    return Overloaded("the decoder service is shutting down; retry later", code="decoder_closed")


def _resolve_all(outcomes: list[tuple[_Job, Array | None, Exception | None]]) -> None:
    """Hand results (or errors) to their jobs' event loops, one wake-up per loop rather than
    per window: each wake-up also hands the GIL to the loop and back. A cancelled future
    or a closed loop is skipped."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Array | None, Exception | None]]]
    by_loop = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, settled in by_loop.items():

        def settle(settled: list[tuple[_Job, Array | None, Exception | None]] = settled) -> None:
            for job, result, error in settled:
                if job.future.done():
                    continue
                if error is not None:
                    job.future.set_exception(error)
                else:
                    job.future.set_result(result if result is not None else np.zeros(0, np.float32))

        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(settle)


def _resolve(job: _Job, *, result: Array | None = None, error: Exception | None = None) -> None:
    _resolve_all([(job, result, error)])
