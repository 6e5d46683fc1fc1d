"""The bucketed decoder on CPU: the padding rules keep every returned sample, warm-up
prepares every shape, and what fails falls back to the eager decode.

On CPU each bucket's runner is the eager decode of exactly that static shape (what a
CUDA graph captures), so these tests check placement, padding and restoring against
the real codec without a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.codec.bucketed import BucketedCodec, Runner
from app.codec.buckets import BucketPlan, Shape
from app.codec.snac import SnacCodec

PLAN = BucketPlan([1, 2, 4], [5, 8, 12, 16, 22], context=3, pad=480, receptive_field=3)


def eager_runner(codec: SnacCodec) -> Callable[[Shape], Runner]:
    def prepare(shape: Shape) -> Runner:
        def run(frames: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            assert frames.shape == (shape.batch, shape.length, 7)  # only static shapes
            return codec.decode_batch(frames, keep=shape.keep, pad=shape.pad)

        return run

    return prepare


@pytest.fixture(scope="module")
def bucketed(tiny_codec: SnacCodec) -> BucketedCodec:
    codec = BucketedCodec(tiny_codec, PLAN, eager_runner(tiny_codec), "static shapes")
    report = codec.warm_up(lambda: False)
    assert (report.prepared, report.failed) == (len(PLAN.shapes()), 0)
    return codec


def frames(rows: int, n: int, seed: int) -> npt.NDArray[np.int64]:
    return np.random.default_rng(seed).integers(0, 4096, size=(rows, n, 7))


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, tuple[int, int], int]:
    """Windows as the pipeline plans them: kept frames with up to 3 context frames a side."""
    kept = draw(st.integers(1, 16))
    left, right = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    pad = draw(st.sampled_from([0, 480]))
    return draw(st.integers(1, 4)), left + kept + right, (left, left + kept), pad


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(windows(), st.integers(0, 99))
def test_a_bucket_returns_the_samples_of_the_eager_decode(
    bucketed: BucketedCodec,
    tiny_codec: SnacCodec,
    window: tuple[int, int, tuple[int, int], int],
    seed: int,
) -> None:
    rows, n, keep, pad = window
    batch = frames(rows, n, seed)
    hits = bucketed.counts.hits
    out = bucketed.decode_batch(batch, keep=keep, pad=pad)
    expected = tiny_codec.decode_batch(batch, keep=keep, pad=pad)
    assert out.shape == expected.shape == (rows, n * 2048)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    placed = PLAN.place(rows, n, keep, pad) is not None
    assert bucketed.counts.hits == hits + placed


def test_typical_windows_run_in_a_bucket(bucketed: BucketedCodec, tiny_codec: SnacCodec) -> None:
    cases = [
        (1, 5, (0, 2), 480),  # a first chunk, padded on the right to 8
        (4, 22, (3, 19), 480),  # the steady 16-frame chunk, exactly a bucket
        (2, 8, (3, 5), 480),
        (3, 14, (3, 11), 0),  # without crossfade a middle window pads to 16
        (1, 10, (3, 10), 0),  # the final flush, padded on the left to 12
    ]
    for rows, n, keep, pad in cases:
        hits = bucketed.counts.hits
        batch = frames(rows, n, n)
        out = bucketed.decode_batch(batch, keep=keep, pad=pad)
        assert bucketed.counts.hits == hits + 1, (rows, n, keep, pad)
        expected = tiny_codec.decode_batch(batch, keep=keep, pad=pad)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_a_runner_that_fails_falls_back_to_eager_for_good(
    tiny_codec: SnacCodec, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Shape] = []

    def prepare(shape: Shape) -> Runner:
        def run(batch: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            calls.append(shape)
            raise RuntimeError("replay failed")

        return run

    codec = BucketedCodec(tiny_codec, PLAN, prepare, "failing")
    codec.warm_up(lambda: False)
    batch = frames(2, 8, 1)
    with caplog.at_level(logging.WARNING, logger="app.codec.bucketed"):
        out = codec.decode_batch(batch, keep=(3, 5), pad=480)
        again = codec.decode_batch(batch, keep=(3, 5), pad=480)
    expected = tiny_codec.decode_batch(batch, keep=(3, 5), pad=480)
    assert np.array_equal(out, expected) and np.array_equal(again, expected)
    assert len(calls) == 1  # dropped after its failure
    assert codec.counts.failures == 1 and codec.counts.eager == 2
    assert "decodes eagerly from now on" in caplog.text


def test_bad_input_is_refused_and_keeps_the_prepared_shapes(bucketed: BucketedCodec) -> None:
    prepared = bucketed.counts.prepared
    with pytest.raises(ValueError, match="codes"):
        bucketed.decode_batch(np.full((1, 8, 7), 4096), keep=(3, 5), pad=480)
    with pytest.raises(ValueError):
        bucketed.decode_batch(frames(1, 8, 0), keep=(5, 3))
    assert bucketed.counts.failures == 0 and bucketed.counts.prepared == prepared


def test_a_shape_that_cannot_be_prepared_is_decoded_eagerly(
    tiny_codec: SnacCodec, caplog: pytest.LogCaptureFixture
) -> None:
    plan = BucketPlan([1], [8, 12], context=3, pad=0, receptive_field=3)
    prepare_eager = eager_runner(tiny_codec)

    def prepare(shape: Shape) -> Runner:
        if shape.length == 8:
            raise RuntimeError("capture failed")
        return prepare_eager(shape)

    codec = BucketedCodec(tiny_codec, plan, prepare, "half")
    with caplog.at_level(logging.INFO, logger="app.codec.warmup"):
        report = codec.warm_up(lambda: False)
    assert (report.shapes, report.prepared, report.failed) == (4, 2, 2)
    assert "failed (RuntimeError: capture failed)" in caplog.text
    assert "4/4 shapes" in caplog.text and "2 of 4 shapes ready" in caplog.text
    batch = frames(1, 8, 3)
    out = codec.decode_batch(batch, keep=(3, 5))
    assert codec.counts.eager == 1 and codec.counts.hits == 0
    assert np.array_equal(out, tiny_codec.decode_batch(batch, keep=(3, 5)))


def test_warm_up_stops_when_the_service_closes(tiny_codec: SnacCodec) -> None:
    prepared: list[Shape] = []

    def prepare(shape: Shape) -> Runner:
        prepared.append(shape)
        return eager_runner(tiny_codec)(shape)

    codec = BucketedCodec(tiny_codec, PLAN, prepare, "stopping")
    report = codec.warm_up(lambda: len(prepared) >= 3)
    assert report.stopped and report.prepared == 3 == len(prepared)
