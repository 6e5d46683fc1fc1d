"""References encoded in slices: exactly the codes of one whole encode, and live windows
served between the slices instead of waiting for a whole reference."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.codec.encoding import ENCODER_CONTEXT_FRAMES, SlicedEncode, plan_slices
from app.codec.request import DecodeRequest
from app.codec.service import CodecService
from app.codec.snac import SnacCodec
from app.errors import Overloaded

S = SAMPLES_PER_FRAME


def clip(samples: int, seed: int) -> np.ndarray:
    """Speech-like noise: broadband with a slow envelope, so codes vary frame to frame."""
    rng = np.random.default_rng(seed)
    envelope = 0.05 + 0.3 * np.abs(np.sin(np.arange(samples) / 3000.0))
    return (rng.standard_normal(samples) * envelope).astype(np.float32)


def sliced(codec: SnacCodec, pcm: np.ndarray, slice_frames: int, context: int) -> np.ndarray:
    work = SlicedEncode(pcm, slice_frames=slice_frames, context_frames=context)
    while not work.finished:
        work.step(codec.encode)
    return work.frames()


@given(
    samples=st.integers(1, 14 * S),
    slice_frames=st.integers(1, 8),
    context=st.integers(0, 4),
)
def test_slices_cover_every_frame_once_on_frame_boundaries(
    samples: int, slice_frames: int, context: int
) -> None:
    slices = plan_slices(samples, slice_frames=slice_frames, context_frames=context)
    kept = []
    for piece in slices:
        assert piece.start % S == 0 and 0 <= piece.start < piece.end <= samples
        lo, hi = piece.keep
        assert hi - lo <= slice_frames and lo <= context
        kept.extend(range(piece.first, piece.first + hi - lo))
        assert piece.start // S + lo == piece.first
    assert kept == list(range(-(-samples // S)))


@settings(max_examples=20, deadline=None)
@given(
    samples=st.integers(1, 40 * S),
    slice_frames=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_sliced_encoding_equals_one_whole_encode(
    tiny_codec: SnacCodec, samples: int, slice_frames: int, seed: int
) -> None:
    pcm = clip(samples, seed)
    whole = tiny_codec.encode(pcm)
    np.testing.assert_array_equal(
        sliced(tiny_codec, pcm, slice_frames, ENCODER_CONTEXT_FRAMES), whole
    )


def test_thirty_seconds_slice_exactly(tiny_codec: SnacCodec) -> None:
    pcm = clip(30 * SAMPLE_RATE, seed=7)
    np.testing.assert_array_equal(sliced(tiny_codec, pcm, 8, ENCODER_CONTEXT_FRAMES),
                                  tiny_codec.encode(pcm))  # fmt: skip


def test_without_context_slices_would_differ(tiny_codec: SnacCodec) -> None:
    """The context is what makes slices exact: the encoder is not causal."""
    pcm = clip(30 * SAMPLE_RATE, seed=7)
    whole = tiny_codec.encode(pcm)
    assert (sliced(tiny_codec, pcm, 8, 0) != whole).any()


# --- on the codec worker ---------------------------------------------------------------


def window(seed: int) -> DecodeRequest:
    frames = np.random.default_rng(seed).integers(0, 4096, size=(10, 7), dtype=np.int64)
    return DecodeRequest(frames, (3, 7), stream=seed)


async def test_windows_are_decoded_between_the_slices_of_a_long_encode(
    tiny_codec: SnacCodec,
) -> None:
    service = CodecService(tiny_codec, dynamic_batching=False)
    service.start()
    try:
        pcm = clip(60 * SAMPLE_RATE, seed=3)
        started = time.perf_counter()
        encode = asyncio.create_task(service.encode(pcm))
        await asyncio.sleep(0.05)
        waits = []
        for n in range(10):  # a live stream's windows, one after another
            asked = time.perf_counter()
            await service.decode(window(n))
            waits.append(time.perf_counter() - asked)
        assert not encode.done(), "the encode finished first: nothing was interleaved"
        frames = await encode
        took = time.perf_counter() - started
    finally:
        service.close()
    np.testing.assert_array_equal(frames, tiny_codec.encode(pcm))
    # Each window waited for one slice at most, never for the rest of the encode.
    assert max(waits) < took / 5, (max(waits), took)


async def test_encodes_beyond_the_cap_are_refused(tiny_codec: SnacCodec) -> None:
    service = CodecService(tiny_codec, max_encodes=1)
    service.start()
    try:
        pcm = clip(20 * SAMPLE_RATE, seed=4)
        first = asyncio.create_task(service.encode(pcm))
        await asyncio.sleep(0)  # queued: the cap counts it from now
        with pytest.raises(Overloaded) as refused:
            await service.encode(pcm)
        assert refused.value.status_code == 503
        assert refused.value.code == "too_many_reference_encodes"
        assert refused.value.headers["Retry-After"] == "1"
        await first
        assert (await service.encode(pcm[:S])).shape == (1, 7)  # room again
    finally:
        service.close()


async def test_a_cancelled_encode_stops_taking_slices(tiny_codec: SnacCodec) -> None:
    service = CodecService(tiny_codec, max_encodes=1)
    service.start()
    try:
        task = asyncio.create_task(service.encode(clip(60 * SAMPLE_RATE, seed=5)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert service.stats().cancelled == 1
        # Its place is free at once, and the worker serves the next one.
        assert (await service.encode(clip(S, seed=6))).shape == (1, 7)
    finally:
        service.close()
