"""Cropped decoding (`keep=`) gives the same samples as decoding the whole window."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.audio.pcm import SAMPLES_PER_FRAME as SPF
from app.codec.receptive import plan_stages, run_cropped
from app.codec.snac import SNAC, SnacCodec
from app.codec.tokens import frames_to_codes


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n = draw(st.integers(1, 10))
    lo = draw(st.integers(0, n - 1))
    hi = draw(st.integers(lo + 1, n))
    pad = draw(st.sampled_from([0, 1, 480, 1024, 2047, 5000]))
    return n, lo, hi, pad


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(window=windows(), seed=st.integers(0, 2**32 - 1))
def test_cropped_decode_equals_the_full_window_decode(
    tiny_codec: SnacCodec, window: tuple[int, int, int, int], seed: int
) -> None:
    n, lo, hi, pad = window
    frames = np.random.default_rng(seed).integers(0, 4096, (n, 7))
    full = tiny_codec.decode(frames)
    cropped = tiny_codec.decode(frames, keep=(lo, hi), pad=pad)
    start, stop = max(0, lo * SPF - pad), min(n * SPF, hi * SPF + pad)
    assert cropped.shape == full.shape
    assert float(np.abs(cropped[start:stop] - full[start:stop]).max()) <= 1e-5
    assert not cropped[:start].any() and not cropped[stop:].any()


def test_decode_batch_crops_every_item(tiny_codec: SnacCodec) -> None:
    frames = np.random.default_rng(1).integers(0, 4096, (3, 8, 7))
    cropped = tiny_codec.decode_batch(frames, keep=(3, 5))
    for item, row in zip(frames, cropped, strict=True):
        full = tiny_codec.decode(item)
        np.testing.assert_allclose(row[3 * SPF : 5 * SPF], full[3 * SPF : 5 * SPF], atol=1e-5)


def test_smaller_margins_would_not_be_exact(tiny_codec: SnacCodec) -> None:
    stages = tiny_codec._stages
    assert stages is not None and stages[-1].rate == SPF
    frames = np.random.default_rng(2).integers(0, 4096, (8, 7))
    full = tiny_codec.decode(frames)
    codes = [torch.from_numpy(c)[None] for c in frames_to_codes(frames)]
    short = [dataclasses.replace(s, margin=s.margin // 2) for s in stages]
    with torch.inference_mode():
        z = tiny_codec.model.quantizer.from_codes(codes)
        out = run_cropped(short, z, 8, (3, 5), 0)[0].numpy()
    assert np.abs(out[3 * SPF : 5 * SPF] - full[3 * SPF : 5 * SPF]).max() > 1e-3


def test_unknown_layers_fall_back_to_whole_windows() -> None:
    model = SNAC(
        sampling_rate=24000,
        encoder_dim=8,
        encoder_rates=[2, 4, 8, 8],
        decoder_dim=64,
        decoder_rates=[8, 8, 4, 2],
        attn_window_size=4,
        vq_strides=[4, 2, 1],
    )
    assert plan_stages(model.decoder.model, 4) is None
    codec = SnacCodec(model, noise=False)
    frames = np.random.default_rng(3).integers(0, 4096, (4, 7))
    np.testing.assert_array_equal(codec.decode(frames, keep=(1, 2)), codec.decode(frames))


def test_keep_must_fit_the_window(tiny_codec: SnacCodec) -> None:
    frames = np.zeros((3, 7), np.int64)
    for keep in ((2, 2), (0, 4), (-1, 1)):
        with pytest.raises(ValueError):
            tiny_codec.decode(frames, keep=keep)
    with pytest.raises(ValueError):
        tiny_codec.decode(frames, keep=(0, 1), pad=-1)
