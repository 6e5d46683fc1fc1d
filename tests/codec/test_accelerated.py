"""Choosing the decoder, and the decode precision, on a CPU-only machine."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from app.codec.accelerated import accelerate, bucket_plan
from app.codec.compiled import CompiledCodec
from app.codec.snac import CodecLoadError, SnacCodec, load_codec


def test_the_default_plan_holds_every_window_the_schedule_plans() -> None:
    plan = bucket_plan(None, max_window=22, max_batch=16, context=3, pad=480)
    assert plan.lengths == tuple(range(1, 23)) and plan.batches == (1, 2, 4, 8, 16)
    for n, keep in [(5, (0, 2)), (8, (3, 5)), (22, (3, 19)), (19, (3, 19)), (2, (0, 2))]:
        placement = plan.place(16, n, keep, 480)
        assert placement is not None and placement.shape.length == n  # no frame added
    seconds = bucket_plan([0.5, 1.0], max_window=22, max_batch=1, context=3, pad=0)
    assert seconds.lengths == (6, 12) and seconds.batches == (1,)


def test_cuda_graphs_on_a_cpu_codec_warn_and_decode_eagerly(
    tiny_codec: SnacCodec, caplog: pytest.LogCaptureFixture
) -> None:
    plan = bucket_plan(None, max_window=22, max_batch=1, context=3, pad=0)
    with caplog.at_level(logging.WARNING, logger="app.codec.accelerated"):
        chosen = accelerate(tiny_codec, plan, cuda_graphs=True, torch_compile=False)
    assert chosen.mode == "eager" and chosen.codec is tiny_codec and chosen.warm_up is None
    assert "needs a CUDA device" in caplog.text


def test_torch_compile_is_chosen_on_cpu_and_eager_is_the_default(tiny_snac_dir: Path) -> None:
    plan = bucket_plan([0.5], max_window=22, max_batch=1, context=3, pad=0)
    codec = load_codec(str(tiny_snac_dir), device="cpu", noise=False)
    assert accelerate(codec, plan, cuda_graphs=False, torch_compile=False).mode == "eager"
    chosen = accelerate(codec, plan, cuda_graphs=False, torch_compile=True)
    assert chosen.mode == "torch-compile" and isinstance(chosen.codec, CompiledCodec)
    assert chosen.warm_up is not None


@pytest.mark.parametrize(("dtype", "bound"), [("bfloat16", 0.1), ("float16", 0.02)])
def test_half_precision_decodes_close_to_float32_on_cpu(
    tiny_snac_dir: Path, tiny_codec: SnacCodec, dtype: str, bound: float
) -> None:
    codec = load_codec(str(tiny_snac_dir), device="cpu", noise=False, dtype=dtype)
    assert str(codec.dtype) == f"torch.{dtype}"
    frames = np.random.default_rng(0).integers(0, 4096, size=(2, 10, 7))
    out = codec.decode_batch(frames, keep=(3, 7), pad=480)
    reference = tiny_codec.decode_batch(frames, keep=(3, 7), pad=480)
    assert out.dtype == np.float32
    error = np.abs(out - reference)[:, 3 * 2048 : 7 * 2048]
    # Measured here: bfloat16 max 0.017, float16 max 0.0023 (docs/gpu.md); not exact.
    assert 0 < error.max() < bound
    # Encoding stays float32: cloning references get the same codes in every precision.
    pcm = reference[0]
    assert np.array_equal(codec.encode(pcm), tiny_codec.encode(pcm))


def test_an_unknown_decode_dtype_is_refused(tiny_snac_dir: Path) -> None:
    with pytest.raises(CodecLoadError, match="dtype"):
        load_codec(str(tiny_snac_dir), device="cpu", dtype="int8")
