"""The codec service against a real tiny random-weight SNAC (noise off, so decodes repeat)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.audio.pcm import SAMPLES_PER_FRAME
from app.audio.windows import WindowPlanner
from app.codec.encoding import ENCODE_SLICE_FRAMES, ENCODER_CONTEXT_FRAMES
from app.codec.request import DecodeRequest
from app.codec.service import WORKER_THREAD, CodecService
from app.codec.snac import SnacCodec
from app.errors import DecodeError, Overloaded

TOLERANCE = 1e-5
S = SAMPLES_PER_FRAME


@pytest.fixture
def codec(tiny_codec: SnacCodec) -> SnacCodec:
    return tiny_codec


class Recording:
    """The real codec, recording which windows each call decoded and on which thread.

    ``poison``: a call containing a window that starts with this frame raises.
    ``gate``: calls wait for it (to hold a job "running").
    """

    def __init__(
        self,
        codec: SnacCodec,
        poison: npt.NDArray[np.int64] | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.codec = codec
        self.poison = poison
        self.gate = gate
        self.calls: list[list[npt.NDArray[np.int64]]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()

    def _record(self, batch: npt.NDArray[np.int64]) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        self.calls.append(list(batch))
        if self.poison is not None and any(np.array_equal(w[0], self.poison) for w in batch):
            raise RuntimeError("poisoned window")

    def decode(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> npt.NDArray[np.float32]:
        self._record(np.asarray(frames)[None])
        return self.codec.decode(frames, keep=keep, pad=pad)

    def decode_batch(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> npt.NDArray[np.float32]:
        self._record(np.asarray(frames))
        return self.codec.decode_batch(frames, keep=keep, pad=pad)

    def encode(self, pcm: npt.ArrayLike) -> npt.NDArray[np.int64]:
        self.threads.add(threading.current_thread().name)
        return self.codec.encode(pcm)


def req(
    window: npt.NDArray[np.int64],
    keep_start: int,
    keep_end: int,
    *,
    pad: int = 0,
    stream: int = 0,
    first: bool = False,
) -> DecodeRequest:
    return DecodeRequest(window, (keep_start, keep_end), pad=pad, stream=stream, first=first)


def frames(n: int, seed: int) -> npt.NDArray[np.int64]:
    return np.random.default_rng(seed).integers(0, 4096, size=(n, 7), dtype=np.int64)


def kept(pcm: npt.NDArray[Any], keep_start: int, keep_end: int, pad: int = 0) -> npt.NDArray[Any]:
    return pcm[max(0, keep_start * S - pad) : keep_end * S + pad]


def assert_kept_equal(
    codec: SnacCodec,
    window: npt.NDArray[np.int64],
    ks: int,
    ke: int,
    got: npt.NDArray[Any],
    pad: int = 0,
) -> None:
    """``got`` equals a whole, unbatched decode of the window on the kept frames and
    ``pad`` samples either side."""
    assert got.dtype == np.float32
    assert got.shape == (len(window) * S,)
    reference = codec.decode(window)
    assert np.abs(kept(got, ks, ke, pad) - kept(reference, ks, ke, pad)).max() <= TOLERANCE


@pytest.fixture
def service_factory(codec: SnacCodec) -> Iterator[Any]:
    made: list[CodecService] = []

    def make(inner: Any = None, **kwargs: Any) -> CodecService:
        service = CodecService(inner if inner is not None else codec, **kwargs)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close(timeout=10)


async def queued(service: CodecService, count: int) -> None:
    """Let submitted tasks reach the queue (the worker is not started yet)."""
    for _ in range(100):
        if service.stats().queue_depth == count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"queue depth {service.stats().queue_depth}, expected {count}")


def window_shapes(max_frames: int) -> st.SearchStrategy[tuple[int, int, int]]:
    """``(frames, keep_start, keep_end)`` of any window."""
    return st.integers(1, max_frames).flatmap(
        lambda n: st.integers(0, n - 1).flatmap(
            lambda ks: st.integers(ks + 1, n).map(lambda ke: (n, ks, ke))
        )
    )


# --- exactness through the service -----------------------------------------------------


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(window_shapes(12), st.integers(0, 2**16)), min_size=1, max_size=8),
    st.sampled_from([0.25, 1.0]),
    st.sampled_from([0, 480, 2048]),
)
def test_batched_equals_unbatched_on_the_kept_region(
    codec: SnacCodec,
    windows: list[tuple[tuple[int, int, int], int]],
    max_padding: float,
    pad: int,
) -> None:
    async def scenario() -> list[npt.NDArray[np.float32]]:
        service = CodecService(codec, max_batch_size=16, max_padding=max_padding)
        tasks = [
            asyncio.create_task(service.decode(req(frames(n, seed), ks, ke, pad=pad)))
            for (n, ks, ke), seed in windows
        ]
        await queued(service, len(tasks))
        service.start()
        try:
            return await asyncio.gather(*tasks)
        finally:
            service.close()

    results = asyncio.run(scenario())
    for ((n, ks, ke), seed), got in zip(windows, results, strict=True):
        assert_kept_equal(codec, frames(n, seed), ks, ke, got, pad)


async def test_first_and_last_windows_batched_with_padding_match_the_offline_decode(
    codec: SnacCodec, service_factory: Any
) -> None:
    recording = Recording(codec)
    service = service_factory(recording, max_padding=1.0)
    stream = frames(23, seed=7)
    planner = WindowPlanner(context=3, first_frames=1, max_frames=8)
    windows = planner.plan(19) + planner.plan(23, final=True)
    assert windows[0].start == 0 and windows[-1].end == 23
    # Other streams' longer windows, whose kept frames line up with the edge windows' once
    # those are padded (the first on its right, the last on its left), go in the same batch.
    edges = [(windows[0], 0), (windows[-1], 4)]
    other = [
        (frames(w.end - w.start + 4, seed=8 + i), w.keep_start - w.start + shift)
        for i, (w, shift) in enumerate(edges)
    ]
    spans = [
        (start, start + w.keep_end - w.keep_start)
        for (_, start), (w, _) in zip(other, edges, strict=True)
    ]
    tasks = [asyncio.create_task(service.decode(DecodeRequest.of(stream, w))) for w in windows] + [
        asyncio.create_task(service.decode(req(f, lo, hi)))
        for (f, _), (lo, hi) in zip(other, spans, strict=True)
    ]
    await queued(service, len(tasks))
    service.start()
    results = await asyncio.gather(*tasks)

    audio = np.concatenate(
        [
            kept(pcm, w.keep_start - w.start, w.keep_end - w.start)
            for w, pcm in zip(windows, results[: len(windows)], strict=True)
        ]
    )
    assert np.abs(audio - codec.decode(stream)).max() <= TOLERANCE
    for (f, _), (lo, hi), pcm in zip(other, spans, results[len(windows) :], strict=True):
        assert_kept_equal(codec, f, lo, hi, pcm)
    # The first window went out padded on its right, the last on its left.
    first, last = stream[: windows[0].end], stream[windows[-1].start :]
    rows = [row for call in recording.calls for row in call]
    first_row = next(r for r in rows if np.array_equal(r[: len(first)], first))
    last_row = next(r for r in rows if np.array_equal(r[-len(last) :], last))
    assert len(first_row) > len(first) and len(last_row) > len(last)
    assert service.stats().padded_frames > 0


# --- scheduling ------------------------------------------------------------------------


async def test_first_chunks_first_then_streams_take_turns(
    codec: SnacCodec, service_factory: Any
) -> None:
    recording = Recording(codec)
    service = service_factory(recording, dynamic_batching=False)
    burst = [frames(4, seed=100 + i) for i in range(5)]
    other = [frames(4, seed=200 + i) for i in range(2)]
    newcomer = frames(4, seed=300)
    tasks = [asyncio.create_task(service.decode(req(f, 0, 1, stream=1))) for f in burst]
    await queued(service, 5)
    tasks += [asyncio.create_task(service.decode(req(f, 0, 1, stream=2))) for f in other]
    await queued(service, 7)
    tasks.append(asyncio.create_task(service.decode(req(newcomer, 0, 1, first=True, stream=3))))
    await queued(service, 8)
    service.start()
    await asyncio.gather(*tasks)

    order = [call[0] for call in recording.calls]
    expected = [newcomer, burst[0], other[0], burst[1], other[1], *burst[2:]]
    assert len(order) == len(expected)
    for got, want in zip(order, expected, strict=True):
        assert np.array_equal(got, want)
    assert service.stats().batch_size_histogram == {1: 8}


async def test_unbatched_mode_decodes_one_window_per_call(
    codec: SnacCodec, service_factory: Any
) -> None:
    service = service_factory(dynamic_batching=False)
    windows = [frames(5, seed=i) for i in range(4)]
    tasks = [asyncio.create_task(service.decode(req(w, 1, 4))) for w in windows]
    await queued(service, 4)
    service.start()
    for w, pcm in zip(windows, await asyncio.gather(*tasks), strict=True):
        assert_kept_equal(codec, w, 1, 4, pcm)
        # Only the kept frames were computed: the codec was asked to crop.
        assert not pcm[: 1 * S].any() and not pcm[4 * S :].any()
    stats = service.stats()
    assert stats.batch_size_histogram == {1: 4} and stats.batches == 4 and stats.jobs == 4


async def test_a_batch_wakes_the_event_loop_once(codec: SnacCodec, service_factory: Any) -> None:
    service = service_factory()
    loop = asyncio.get_running_loop()
    wake_ups = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any, context: Any = None) -> Any:
        nonlocal wake_ups
        wake_ups += 1
        return call_soon_threadsafe(callback, *args, context=context)

    windows = [frames(7, seed=i) for i in range(4)]
    tasks = [asyncio.create_task(service.decode(req(w, 3, 4))) for w in windows]
    await queued(service, 4)
    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:
        service.start()
        results = await asyncio.gather(*tasks)
    finally:
        del loop.call_soon_threadsafe
    assert service.stats().batch_size_histogram == {4: 1}
    assert wake_ups == 1  # four windows settled by one callback
    for w, pcm in zip(windows, results, strict=True):
        assert_kept_equal(codec, w, 3, 4, pcm)


async def test_an_idle_worker_waits_microsleep_for_a_batch_to_fill(
    codec: SnacCodec, service_factory: Any
) -> None:
    service = service_factory(max_batch_size=4, microsleep=2.0)
    service.start()
    windows = [frames(6, seed=i) for i in range(4)]
    started = time.perf_counter()
    tasks = []
    for w in windows:
        tasks.append(asyncio.create_task(service.decode(req(w, 0, 6))))
        await asyncio.sleep(0.02)
    results = await asyncio.gather(*tasks)
    # One batch of four, released as soon as it was full rather than after 2 s.
    assert time.perf_counter() - started < 1.5
    assert service.stats().batch_size_histogram == {4: 1}
    for w, pcm in zip(windows, results, strict=True):
        assert_kept_equal(codec, w, 0, 6, pcm)


async def test_many_tasks_share_the_worker_thread(codec: SnacCodec, service_factory: Any) -> None:
    recording = Recording(codec)
    service = service_factory(recording, max_batch_size=8, microsleep=0.005)
    service.start()
    rng = np.random.default_rng(5)

    async def stream(index: int) -> None:
        for step in range(3):
            n = int(rng.integers(4, 11))
            w = frames(n, seed=1000 * index + step)
            pcm = await service.decode(req(w, min(3, n - 1), n, first=step == 0))
            assert_kept_equal(codec, w, min(3, n - 1), n, pcm)

    await asyncio.gather(*(stream(i) for i in range(24)))
    stats = service.stats()
    assert stats.jobs == 72 and stats.queue_depth == 0 and stats.errors == 0
    assert stats.decode_seconds_total > 0 and stats.last_decode_seconds > 0
    assert stats.seconds_per_frame > 0 and stats.queued_frames == 0
    assert max(stats.batch_size_histogram) > 1
    assert recording.threads == {WORKER_THREAD}


# --- failures --------------------------------------------------------------------------


async def test_a_failing_window_fails_alone_and_the_worker_survives(
    codec: SnacCodec, service_factory: Any
) -> None:
    windows = [frames(6, seed=40 + i) for i in range(4)]
    recording = Recording(codec, poison=windows[2][0])
    service = service_factory(recording, max_batch_size=4)
    tasks = [asyncio.create_task(service.decode(req(w, 0, 6))) for w in windows]
    await queued(service, 4)
    service.start()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[2], DecodeError)
    assert "poisoned window" in results[2].message and results[2].status_code == 500
    for i in (0, 1, 3):
        got = results[i]
        assert isinstance(got, np.ndarray)
        assert_kept_equal(codec, windows[i], 0, 6, got)
    assert len(recording.calls[0]) == 4  # they were batched together first
    later = frames(5, seed=50)
    assert_kept_equal(codec, later, 0, 5, await service.decode(req(later, 0, 5)))
    assert service.stats().errors == 1


async def test_a_full_queue_refuses_with_overloaded(codec: SnacCodec, service_factory: Any) -> None:
    service = service_factory(queue_size=2)
    windows = [frames(4, seed=i) for i in range(3)]
    tasks = [asyncio.create_task(service.decode(req(w, 0, 4))) for w in windows[:2]]
    await queued(service, 2)
    assert service.has_capacity() is False and service.stats().queued_frames == 8
    with pytest.raises(Overloaded) as raised:
        await service.decode(req(windows[2], 0, 4))
    assert raised.value.status_code == 503
    assert service.stats().rejected == 1
    service.start()
    for w, pcm in zip(windows[:2], await asyncio.gather(*tasks), strict=True):
        assert_kept_equal(codec, w, 0, 4, pcm)
    assert service.has_capacity(2) and not service.has_capacity(3)


async def test_a_cancelled_waiting_job_is_never_decoded(
    codec: SnacCodec, service_factory: Any
) -> None:
    recording = Recording(codec)
    service = service_factory(recording)
    gone, kept_window = frames(5, seed=60), frames(5, seed=61)
    left = asyncio.create_task(service.decode(req(gone, 0, 5)))
    stays = asyncio.create_task(service.decode(req(kept_window, 0, 5)))
    await queued(service, 2)
    left.cancel()
    with pytest.raises(asyncio.CancelledError):
        await left
    assert service.stats().queue_depth == 1 and service.stats().cancelled == 1
    service.start()
    assert_kept_equal(codec, kept_window, 0, 5, await stays)
    decoded = [row for call in recording.calls for row in call]
    assert not any(np.array_equal(row, gone) for row in decoded)


async def test_a_job_cancelled_while_decoding_does_not_hurt_the_worker(
    codec: SnacCodec, service_factory: Any
) -> None:
    gate = threading.Event()
    recording = Recording(codec, gate=gate)
    service = service_factory(recording)
    service.start()
    running = asyncio.create_task(service.decode(req(frames(5, seed=70), 0, 5)))
    await asyncio.to_thread(recording.entered.wait, 10)
    running.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await running
    after = frames(4, seed=71)
    assert_kept_equal(codec, after, 0, 4, await service.decode(req(after, 0, 4)))


async def test_close_fails_queued_jobs_and_finishes_the_running_one(
    codec: SnacCodec, service_factory: Any
) -> None:
    gate = threading.Event()
    recording = Recording(codec, gate=gate)
    service = service_factory(recording, dynamic_batching=False)
    service.start()
    running_window = frames(5, seed=80)
    running = asyncio.create_task(service.decode(req(running_window, 0, 5)))
    await asyncio.to_thread(recording.entered.wait, 10)
    waiting = [
        asyncio.create_task(service.decode(req(frames(5, seed=81 + i), 0, 5))) for i in range(2)
    ]
    await queued(service, 2)
    closing = asyncio.create_task(asyncio.to_thread(service.close, 10))
    for task in waiting:
        with pytest.raises(Overloaded, match="shutting down"):
            await task
    gate.set()
    await closing
    assert_kept_equal(codec, running_window, 0, 5, await running)
    assert not service.stats().running and not service.has_capacity()
    with pytest.raises(Overloaded):
        await service.decode(req(running_window, 0, 5))


# --- encode and validation -------------------------------------------------------------


async def test_encode_runs_on_the_worker(codec: SnacCodec, service_factory: Any) -> None:
    recording = Recording(codec)
    service = service_factory(recording)
    service.start()
    pcm = codec.decode(frames(6, seed=90))
    got = await service.encode(pcm)
    assert got.shape == (6, 7) and got.dtype == np.int64
    assert np.array_equal(got, codec.encode(pcm))
    assert recording.threads == {WORKER_THREAD} and service.stats().encodes == 1


async def test_the_hold_of_an_encode_slice_is_known_before_a_reference_arrives(
    codec: SnacCodec, service_factory: Any
) -> None:
    """Streams allow for a window waiting behind an encode slice (`encode_hold`): the worker
    times a slice of silence at start-up, then each slice of a reference it encodes."""
    lengths: list[int] = []
    slice_started = threading.Event()
    release = threading.Event()

    class Slow:
        def decode_batch(self, *args: Any, **kwargs: Any) -> npt.NDArray[np.float32]:
            return codec.decode_batch(*args, **kwargs)

        def encode(self, pcm: npt.ArrayLike) -> npt.NDArray[np.int64]:
            lengths.append(len(np.asarray(pcm)))
            time.sleep(0.03)
            if len(lengths) > 3:  # the probe (twice) and the reference's first slice ran
                slice_started.set()
                release.wait(10)
            return codec.encode(pcm)

    service = service_factory(Slow())
    service.start()
    pcm = codec.decode(frames(40, seed=91))  # five slices of eight frames
    for _ in range(400):
        if len(lengths) >= 2:
            break
        await asyncio.sleep(0.01)
    assert lengths == [(ENCODE_SLICE_FRAMES + 2 * ENCODER_CONTEXT_FRAMES) * S] * 2
    assert service.encode_hold == 0.0  # nothing is being encoded
    task = asyncio.create_task(service.encode(pcm))
    assert await asyncio.to_thread(slice_started.wait, 10)
    assert service.encode_hold >= 0.03
    release.set()
    assert np.array_equal(await task, codec.encode(pcm))
    assert len(lengths) == 7 and service.encode_hold == 0.0


async def test_bad_requests_are_refused_before_queueing(service_factory: Any) -> None:
    service = service_factory()
    with pytest.raises(ValueError):
        await service.decode(req(np.zeros((4, 6), np.int64), 0, 4))
    with pytest.raises(ValueError):
        await service.decode(req(np.zeros((4, 7), np.int64), 2, 2))
    with pytest.raises(ValueError):
        await service.decode(req(np.zeros((4, 7), np.int64), 0, 5))
    assert service.stats().queue_depth == 0


def test_start_twice_is_an_error(service_factory: Any) -> None:
    service = service_factory()
    service.start()
    with pytest.raises(RuntimeError):
        service.start()


async def test_a_frame_budget_caps_the_kept_frames_of_one_codec_call(
    codec: SnacCodec, service_factory: Any
) -> None:
    """On a CPU short windows batch cheaply and long ones do not: ``max_batch_frames``."""
    recording = Recording(codec)
    service = service_factory(recording, max_batch_size=16, max_batch_frames=4)
    one = [frames(7, seed=i) for i in range(6)]  # one kept frame each
    long = frames(12, seed=99)  # six kept frames: alone, over the budget
    tasks = [asyncio.create_task(service.decode(req(w, 3, 4, stream=i))) for i, w in enumerate(one)]
    tasks.append(asyncio.create_task(service.decode(req(long, 3, 9, stream=7))))
    await queued(service, 7)
    service.start()
    results = await asyncio.gather(*tasks)
    for w, pcm in zip(one, results[:-1], strict=True):
        assert_kept_equal(codec, w, 3, 4, pcm)
    assert_kept_equal(codec, long, 3, 9, results[-1])
    # Four one-frame windows, then two, then the long one alone.
    assert [len(call) for call in recording.calls] == [4, 2, 1]
