"""The decoder service: one worker thread owns the codec and decodes every stream's windows.

Streams submit context windows and await an asyncio future; the worker resolves it
through ``loop.call_soon_threadsafe``, so the event loop never runs a decode. When
the worker is free it takes what is queued (up to ``max_batch_size``), waiting at
most ``microsleep`` for more, and decodes same-length windows in one codec call.

Order: first chunks of streams go first (time to first audio), then start-time fair
queueing: each job gets a virtual start tag ``max(now, the stream's previous tag + 1)``,
so one stream's burst takes turns with the others instead of blocking them.

Padding: SNAC's decoder is not causal, so a window of another length is padded only
on a side where its kept region lies at least ``context`` frames from the window's
edge; the padding then lies outside the receptive field of every kept sample. A side
at a true stream edge (first window, last window) is never padded.

On CPU a batch costs at least as much per window as single decodes and every window
in it waits for the whole batch, so run unbatched there (docs/benchmarks.md, "Decoder
throughput"); batching is for GPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.grouping import Group, Slot, plan_groups
from app.errors import DecodeError, Overloaded

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]


class FrameCodec(Protocol):
    """What the service needs of `app.codec.snac.SnacCodec`: ``keep=(lo, hi), pad=X``
    computes only frames ``[lo, hi)`` plus ``X`` samples each side (zeros elsewhere)."""

    def decode(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> npt.NDArray[np.float32]: ...
    def decode_batch(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> npt.NDArray[np.float32]: ...
    def encode(self, pcm: npt.ArrayLike) -> npt.NDArray[np.int64]: ...


@dataclass(frozen=True)
class DecoderStats:
    """A consistent snapshot of the service's counters, for metrics and admission."""

    queue_depth: int
    batches: int
    """Codec calls made (one per same-length group)."""
    jobs: int
    """Windows that went through the codec."""
    last_batch_size: int
    batch_size_histogram: dict[int, int]
    decode_seconds_total: float
    last_decode_seconds: float
    errors: int
    """Jobs failed with `DecodeError`."""
    queue_capacity: int
    running: bool
    rejected: int
    """Submissions refused with `Overloaded` because the queue was full."""
    cancelled: int
    """Jobs withdrawn while still queued (the client left)."""
    encodes: int
    frames_decoded: int
    padded_frames: int
    queue_wait_seconds_total: float
    last_queue_wait_seconds: float
    queued_frames: int
    """Frames waiting to be decoded: with `seconds_per_frame`, the backlog in seconds."""
    seconds_per_frame: float
    """Mean codec time per decoded frame (padding included) so far."""


@dataclass(eq=False)
class _Job:
    payload: Array
    keep_start: int
    keep_end: int
    pad: int
    encode: bool
    stream: Hashable
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Array]
    key: tuple[int, int, int] = (0, 0, 0)
    """Heap order: (priority class, virtual start tag, arrival number)."""
    enqueued_at: float = field(default_factory=time.perf_counter)
    queued: bool = True


class DecoderService:
    """One per process: the only user of the codec, decoding windows in dynamic batches."""

    def __init__(
        self,
        codec: FrameCodec,
        *,
        dynamic_batching: bool = True,
        max_batch_size: int = 16,
        microsleep: float = 0.002,
        queue_size: int = 1024,
        context: int = 3,
        max_padding: float = 0.25,
        torch_threads: int | None = None,
    ) -> None:
        """``context``: frames of real context that make a window's kept region exact (the
        codec's receptive field, 3 for SNAC 24 kHz), whatever context the planner uses.
        ``torch_threads``: set torch's intra-op threads when the worker starts."""
        if max_batch_size < 1 or queue_size < 1 or microsleep < 0 or context < 0:
            raise ValueError("max_batch_size and queue_size must be >= 1, microsleep/context >= 0")
        self._codec = codec
        self._limit = max_batch_size if dynamic_batching else 1
        self._microsleep = microsleep
        self._queue_size = queue_size
        self._context = context
        self._max_padding = max_padding
        self._torch_threads = torch_threads
        self._cond = threading.Condition()
        self._heap: list[tuple[tuple[int, int, int], _Job]] = []
        self._depth = 0  # queued jobs not withdrawn (the heap may hold withdrawn ones)
        self._queued_frames = 0
        self._arrivals = 0
        self._vtime = 0
        self._next_tag: dict[Hashable, int] = {}
        self._thread: threading.Thread | None = None
        self._closing = False
        self._counts = {"batches": 0, "jobs": 0, "errors": 0, "rejected": 0, "cancelled": 0}
        self._counts |= {"encodes": 0, "frames": 0, "padded": 0, "last_batch": 0}
        self._histogram: dict[int, int] = {}
        self._decode_total = self._decode_last = self._wait_total = self._wait_last = 0.0

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._closing:
                raise RuntimeError("the decoder service can be started once")
            self._thread = threading.Thread(target=self._work, name="snac-decoder", daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Fail queued jobs, let the running batch finish, join the worker."""
        with self._cond:
            self._closing = True
            pending = [job for _, job in self._heap if job.queued]
            for job in pending:
                job.queued = False
            self._heap.clear()
            self._depth = self._queued_frames = 0
            self._cond.notify_all()
        for job in pending:
            _resolve(job, error=_closed_error())
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # --- submission --------------------------------------------------------------------

    def has_capacity(self, jobs: int = 1) -> bool:
        with self._cond:
            return not self._closing and self._depth + jobs <= self._queue_size

    async def decode(
        self,
        frames: npt.ArrayLike,
        keep_start: int,
        keep_end: int,
        *,
        first: bool = False,
        stream: Hashable | None = None,
        pad: int = 0,
    ) -> npt.NDArray[np.float32]:
        """PCM ``(n * 2048,)`` of the window ``frames`` ``(n, 7)``: equal to
        ``codec.decode(frames)`` on the kept frames and ``pad`` samples either side of
        them (a crossfade's overlap); the samples further out may be zeros.

        ``first`` marks a stream's first chunk (served first). ``stream`` names the
        stream for fair ordering; by default the calling task is the stream.
        """
        window = np.array(frames, dtype=np.int64)
        if window.ndim != 2 or window.shape[1] != 7 or window.shape[0] == 0:
            raise ValueError(f"frames must have shape (n >= 1, 7), got {window.shape}")
        if not 0 <= keep_start < keep_end <= window.shape[0]:
            raise ValueError(f"keep region [{keep_start}, {keep_end}) outside {window.shape[0]}")
        if pad < 0:
            raise ValueError("pad must be >= 0")
        result = await self._submit(window, (keep_start, keep_end, pad), False, first, stream)
        return result.astype(np.float32, copy=False)

    async def encode(self, pcm: npt.ArrayLike, *, stream: Hashable | None = None) -> Array:
        """Frames ``(n, 7)`` of mono 24 kHz PCM, encoded on the worker."""
        audio = np.array(pcm, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"pcm must be mono (samples,), got {audio.shape}")
        return await self._submit(audio, (0, 0, 0), True, False, stream)

    async def _submit(
        self,
        payload: Array,
        keep: tuple[int, int, int],
        encode: bool,
        first: bool,
        stream: Hashable | None,
    ) -> Array:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Array] = loop.create_future()
        if stream is None:
            stream = asyncio.current_task() or object()
        job = _Job(payload, *keep, encode, stream, loop, future)
        with self._cond:
            if self._closing:
                raise _closed_error()
            if self._depth >= self._queue_size:
                self._counts["rejected"] += 1
                raise Overloaded(
                    f"the decoder queue is full ({self._queue_size} windows waiting); retry later"
                )
            tag = max(self._vtime, self._next_tag.get(stream, 0))
            self._next_tag[stream] = tag + 1
            self._arrivals += 1
            job.key = (0 if first else 1, tag, self._arrivals)
            heapq.heappush(self._heap, (job.key, job))
            self._depth += 1
            self._queued_frames += len(payload) if not encode else 0
            self._cond.notify_all()
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw(job)
            raise

    def _withdraw(self, job: _Job) -> None:
        """The client left: a job still queued is dropped (left in the heap, skipped)."""
        with self._cond:
            if job.queued:
                job.queued = False
                self._depth -= 1
                self._queued_frames -= 0 if job.encode else len(job.payload)
                self._counts["cancelled"] += 1
                self._cond.notify_all()

    # --- the worker --------------------------------------------------------------------

    def _work(self) -> None:
        if self._torch_threads is not None:
            import torch

            torch.set_num_threads(self._torch_threads)
        while True:
            jobs = self._next_jobs()
            if jobs is None:
                return
            try:
                self._run(jobs)
            except Exception as exc:  # a bug here must not strand the awaiting streams
                logger.exception("decoder worker failed on a batch")
                for job in jobs:
                    _resolve(job, error=_decode_error(f"decoder worker failed: {exc!r}", exc))

    def _next_jobs(self) -> list[_Job] | None:
        with self._cond:
            while not self._closing and self._depth == 0:
                self._cond.wait()
            deadline = time.monotonic() + self._microsleep
            while not self._closing and 0 < self._depth < self._limit:
                remaining = deadline - time.monotonic()
                arrivals = self._arrivals
                if remaining <= 0 or not self._cond.wait(remaining):
                    break
                if self._arrivals == arrivals:  # woken by a withdrawal, not an arrival
                    break
            if self._closing:
                return None
            return self._take()

    def _take(self) -> list[_Job]:
        jobs: list[_Job] = []
        now = time.perf_counter()
        while self._heap and len(jobs) < self._limit:
            _, job = heapq.heappop(self._heap)
            if not job.queued:
                continue
            job.queued = False
            self._depth -= 1
            self._queued_frames -= 0 if job.encode else len(job.payload)
            self._vtime = max(self._vtime, job.key[1])
            self._wait_last = now - job.enqueued_at
            self._wait_total += self._wait_last
            jobs.append(job)
        if len(self._next_tag) > 2 * self._depth + 64:
            # A stream whose next tag is not ahead of virtual time is indistinguishable
            # from a new one: forget it (ended streams would otherwise pile up).
            self._next_tag = {s: t for s, t in self._next_tag.items() if t > self._vtime}
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        windows = [j for j in jobs if not j.encode]
        shapes = [_exact_region(j) for j in windows]
        for group in plan_groups(shapes, context=self._context, max_padding=self._max_padding):
            self._decode_group([windows[s.index] for s in group.slots], group)
        for job in jobs:
            if job.encode:
                self._encode(job)

    def _encode(self, job: _Job) -> None:
        try:
            frames = self._codec.encode(job.payload)
        except Exception as exc:
            logger.exception("encoding failed")
            self._count(errors=1)
            message = f"encoding the reference audio failed: {exc!r}"
            _resolve(job, error=_decode_error(message, exc))
            return
        self._count(encodes=1)
        _resolve(job, result=np.asarray(frames, dtype=np.int64))

    def _decode_group(self, jobs: list[_Job], group: Group) -> None:
        try:
            outputs = self._decode_padded(jobs, group)
        except Exception as exc:
            if len(jobs) > 1:
                # Retry alone so one bad window (or a batch too big for the device)
                # fails only what cannot be decoded by itself.
                logger.warning("batch of %d windows failed (%r); retrying each", len(jobs), exc)
                for job in jobs:
                    self._decode_group([job], Group(len(job.payload), (Slot(0, 0, 0),)))
                return
            logger.exception("decoding a window failed")
            self._count(errors=1)
            message = f"decoding a window of {len(jobs[0].payload)} frames failed: {exc!r}"
            _resolve(jobs[0], error=_decode_error(message, exc))
            return
        for job, pcm in zip(jobs, outputs, strict=True):
            _resolve(job, result=pcm)

    def _decode_padded(self, jobs: list[_Job], group: Group) -> list[Array]:
        # One crop for the group: the union of the kept regions (each stays exact).
        keep = (
            min(s.left + j.keep_start for j, s in zip(jobs, group.slots, strict=True)),
            max(s.left + j.keep_end for j, s in zip(jobs, group.slots, strict=True)),
        )
        pad = max(j.pad for j in jobs)
        started = time.perf_counter()
        if len(jobs) == 1 and group.slots[0].left == group.slots[0].right == 0:
            pcm = np.asarray(self._codec.decode(jobs[0].payload, keep=keep, pad=pad))
            batch = pcm.reshape(1, -1)
        else:
            padded = [
                np.pad(job.payload, ((s.left, s.right), (0, 0)), mode="edge")
                for job, s in zip(jobs, group.slots, strict=True)
            ]
            batch = np.asarray(self._codec.decode_batch(np.stack(padded), keep=keep, pad=pad))
        elapsed = time.perf_counter() - started
        expected = (len(jobs), group.length * SAMPLES_PER_FRAME)
        if batch.shape != expected:
            raise ValueError(f"codec returned shape {batch.shape}, expected {expected}")
        outputs = []
        for row, job, s in zip(batch, jobs, group.slots, strict=True):
            start = s.left * SAMPLES_PER_FRAME
            pcm = row[start : start + len(job.payload) * SAMPLES_PER_FRAME]
            outputs.append(pcm if len(jobs) == 1 else pcm.copy())
        padded_frames = sum(s.left + s.right for s in group.slots)
        with self._cond:
            self._counts["batches"] += 1
            self._counts["jobs"] += len(jobs)
            self._counts["frames"] += len(jobs) * group.length
            self._counts["padded"] += padded_frames
            self._counts["last_batch"] = len(jobs)
            self._histogram[len(jobs)] = self._histogram.get(len(jobs), 0) + 1
            self._decode_total += elapsed
            self._decode_last = elapsed
        return outputs

    def _count(self, **increments: int) -> None:
        with self._cond:
            for name, value in increments.items():
                self._counts[name] += value

    def stats(self) -> DecoderStats:
        with self._cond:
            c = self._counts
            thread = self._thread
            return DecoderStats(
                queue_depth=self._depth,
                batches=c["batches"],
                jobs=c["jobs"],
                last_batch_size=c["last_batch"],
                batch_size_histogram=dict(sorted(self._histogram.items())),
                decode_seconds_total=self._decode_total,
                last_decode_seconds=self._decode_last,
                errors=c["errors"],
                queue_capacity=self._queue_size,
                running=thread is not None and thread.is_alive() and not self._closing,
                rejected=c["rejected"],
                cancelled=c["cancelled"],
                encodes=c["encodes"],
                frames_decoded=c["frames"],
                padded_frames=c["padded"],
                queue_wait_seconds_total=self._wait_total,
                last_queue_wait_seconds=self._wait_last,
                queued_frames=self._queued_frames,
                seconds_per_frame=self._decode_total / c["frames"] if c["frames"] else 0.0,
            )


def _exact_region(job: _Job) -> tuple[int, int, int]:
    """``(frames, first, end)``: the frames whose samples must be exact, kept ones and the
    frames that ``pad`` reaches into."""
    reach = -(-job.pad // SAMPLES_PER_FRAME)
    n = len(job.payload)
    return n, max(0, job.keep_start - reach), min(n, job.keep_end + reach)


def _decode_error(message: str, cause: Exception) -> DecodeError:
    error = DecodeError(message)
    error.__cause__ = cause
    return error


def _closed_error() -> Overloaded:
    return Overloaded("the decoder service is shutting down; retry later", code="decoder_closed")


def _resolve(job: _Job, *, result: Array | None = None, error: Exception | None = None) -> None:
    """Hand a result to the job's event loop; a cancelled future or a closed loop is skipped."""

    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result if result is not None else np.zeros(0, np.float32))

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        job.loop.call_soon_threadsafe(settle)
