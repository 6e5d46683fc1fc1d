"""TORCH_COMPILE on CPU: the compiled decoder equals the eager one, and a compile that
fails leaves the eager decoder in charge.

Compiling takes a minute or more on a 2-core runner the first time (inductor writes
and builds C++ kernels; later runs hit its on-disk cache), hence the longer timeouts.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from app.codec.buckets import BucketPlan
from app.codec.compiled import CompiledCodec
from app.codec.snac import SnacCodec, load_codec

PLAN = BucketPlan([1, 2], [5, 8], context=3, pad=480, receptive_field=3)


def frames(rows: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=(rows, n, 7))


@pytest.mark.timeout(1200)
def test_the_compiled_decoder_equals_the_eager_one(
    tiny_snac_dir: Path, tiny_codec: SnacCodec, caplog: pytest.LogCaptureFixture
) -> None:
    codec = CompiledCodec(load_codec(str(tiny_snac_dir), device="cpu", noise=False), PLAN)
    with caplog.at_level(logging.INFO, logger="app.codec.warmup"):
        report = codec.warm_up(lambda: False)
    assert (report.prepared, report.failed) == (len(PLAN.shapes()), 0)
    assert "decoder warm-up (torch.compile) done" in caplog.text
    # Warmed-up shapes and others (compiled with dynamic shapes: no bucket needed).
    for rows, n, keep, pad in [
        (1, 8, (3, 5), 480),
        (2, 5, (0, 2), 480),
        (1, 22, (3, 19), 480),
        (3, 11, (3, 11), 0),
        (1, 6, None, 0),
    ]:
        batch = frames(rows, n, n)
        out = codec.decode_batch(batch, keep=keep, pad=pad)
        expected = tiny_codec.decode_batch(batch, keep=keep, pad=pad)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    assert codec.active
    # Served from the codec worker, a thread of its own: nothing compiles there any more.
    errors: list[BaseException] = []

    def serve() -> None:
        torch._dynamo.config.error_on_recompile = True  # thread-local, like its limits
        try:
            for rows, n, keep, pad in [(2, 8, (3, 5), 480), (1, 5, (0, 2), 480), (2, 7, None, 0)]:
                codec.decode_batch(frames(rows, n, 1), keep=keep, pad=pad)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=serve)
    worker.start()
    worker.join()
    assert errors == [] and codec.active
    reference = np.zeros(2048 * 4, dtype=np.float32)
    assert np.array_equal(codec.encode(reference), tiny_codec.encode(reference))


@pytest.mark.timeout(600)
def test_a_compile_that_fails_falls_back_to_eager(
    tiny_snac_dir: Path,
    tiny_codec: SnacCodec,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A machine without a working C++ compiler: inductor cannot build its CPU kernels.
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    monkeypatch.setattr(inductor, "autotune_local_cache", False)
    torch._dynamo.reset()
    try:
        codec = CompiledCodec(load_codec(str(tiny_snac_dir), device="cpu", noise=False), PLAN)
        with caplog.at_level(logging.WARNING):
            report = codec.warm_up(lambda: False)
        assert not codec.active
        assert report.stopped and report.prepared == 1  # the first shape, decoded eagerly
        assert "decoding eagerly from now on" in caplog.text
        batch = frames(2, 8, 5)
        out = codec.decode_batch(batch, keep=(3, 5), pad=480)
        np.testing.assert_array_equal(out, tiny_codec.decode_batch(batch, keep=(3, 5), pad=480))
    finally:
        torch._dynamo.reset()  # no half-built state for later compiles


def test_bad_input_fails_without_turning_compile_off(
    tiny_snac_dir: Path,
) -> None:
    codec = CompiledCodec(load_codec(str(tiny_snac_dir), device="cpu", noise=False), PLAN)
    with pytest.raises(ValueError, match="codes"):
        codec.decode_batch(np.full((1, 8, 7), -1), keep=(3, 5))
    assert codec.active
