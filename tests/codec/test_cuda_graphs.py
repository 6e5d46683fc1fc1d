"""CUDA graphs of the decode equal the eager decode (run only where CUDA is available)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.codec.accelerated import accelerate
from app.codec.bucketed import BucketedCodec
from app.codec.buckets import BucketPlan
from app.codec.snac import load_codec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PLAN = BucketPlan([1, 2, 4], [5, 8, 12, 22], context=3, pad=480, receptive_field=3)
CASES = [
    (1, 5, (0, 2), 480),
    (3, 8, (3, 5), 480),
    (4, 22, (3, 19), 480),
    (2, 11, (3, 8), 0),
    (1, 9, (3, 9), 0),
    (2, 30, (3, 27), 480),  # no bucket: eager
]


def frames(rows: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=(rows, n, 7))


# A padded bucket is a different shape, for which cuDNN may pick another algorithm (TF32
# for float32 on Ampere and later, by torch's default): the bound allows for that and still
# catches padding that changes samples (errors of 0.1 to 0.8 on CPU).
@pytest.mark.parametrize(("dtype", "bound"), [("float32", 2e-3), ("bfloat16", 6e-2)])
def test_graph_replays_equal_the_eager_decode(
    tiny_snac_dir: Path, dtype: str, bound: float
) -> None:
    codec = load_codec(str(tiny_snac_dir), device="cuda", noise=False, dtype=dtype)
    accelerated = accelerate(codec, PLAN, cuda_graphs=True, torch_compile=False)
    graphs = accelerated.codec
    assert accelerated.mode == "cuda-graphs" and isinstance(graphs, BucketedCodec)
    assert accelerated.warm_up is not None
    report = accelerated.warm_up(lambda: False)
    assert (report.prepared, report.failed) == (len(PLAN.shapes()), 0)
    for _ in range(2):  # replays in any order reuse the shared pool safely
        for rows, n, keep, pad in CASES:
            batch = frames(rows, n, n + rows)
            out = graphs.decode_batch(batch, keep=keep, pad=pad)
            expected = codec.decode_batch(batch, keep=keep, pad=pad)
            np.testing.assert_allclose(out, expected, rtol=0, atol=bound)
    assert graphs.counts.hits == 2 * (len(CASES) - 1) and graphs.counts.failures == 0


def test_graphs_keep_noise_random_per_replay(tiny_snac_dir: Path) -> None:
    codec = load_codec(str(tiny_snac_dir), device="cuda", noise=True)
    plan = BucketPlan([1], [8], context=3, pad=480, receptive_field=3)
    graphs = accelerate(codec, plan, cuda_graphs=True, torch_compile=False)
    assert graphs.warm_up is not None
    graphs.warm_up(lambda: False)
    batch = frames(1, 8, 0)
    first = graphs.codec.decode_batch(batch, keep=(3, 5), pad=480)
    second = graphs.codec.decode_batch(batch, keep=(3, 5), pad=480)
    assert not np.array_equal(first, second)  # each window draws its own noise
    assert np.abs(first - second).max() < 1.0
