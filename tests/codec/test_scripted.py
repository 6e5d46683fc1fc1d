"""The CPU decode as one TorchScript call: the same samples as the eager decode."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.receptive import Stage
from app.codec.scripted import script_decode
from app.codec.snac import SNAC, SnacCodec


@pytest.fixture(scope="module")
def eager_codec(tiny_snac_dir: Path) -> SnacCodec:
    return SnacCodec(SNAC.from_pretrained(str(tiny_snac_dir)), noise=False, script=False)


@st.composite
def windows(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, int], int]:
    """A batch of windows, the frames kept and the pad: what the decoder service sends."""
    n = draw(st.integers(1, 14))
    lo = draw(st.integers(0, n - 1))
    hi = draw(st.integers(lo + 1, n))
    batch = draw(st.integers(1, 4))
    pad = draw(st.sampled_from([0, 1, 480, SAMPLES_PER_FRAME, 3000]))
    seed = draw(st.integers(0, 2**16))
    frames = np.random.default_rng(seed).integers(0, 4096, (batch, n, 7))
    return frames, (lo, hi), pad


def test_the_cpu_codec_is_scripted(tiny_codec: SnacCodec, eager_codec: SnacCodec) -> None:
    assert tiny_codec.scripted
    assert not eager_codec.scripted


@settings(max_examples=40, deadline=None)
@given(windows())
def test_a_scripted_window_equals_the_eager_one(
    tiny_codec: SnacCodec, eager_codec: SnacCodec, window: tuple[np.ndarray, tuple[int, int], int]
) -> None:
    frames, keep, pad = window
    got = tiny_codec.decode_batch(frames, keep=keep, pad=pad)
    want = eager_codec.decode_batch(frames, keep=keep, pad=pad)
    assert got.shape == want.shape == (frames.shape[0], frames.shape[1] * SAMPLES_PER_FRAME)
    np.testing.assert_array_equal(got, want)


def test_a_whole_decode_equals_the_eager_one(tiny_codec: SnacCodec, eager_codec: SnacCodec) -> None:
    frames = np.random.default_rng(3).integers(0, 4096, (2, 9, 7))
    np.testing.assert_array_equal(tiny_codec.decode_batch(frames), eager_codec.decode_batch(frames))


def test_noise_stays_random_when_scripted(tiny_noisy_codec: SnacCodec) -> None:
    assert tiny_noisy_codec.scripted
    frames = np.random.default_rng(4).integers(0, 4096, (1, 7, 7))
    a, b = (tiny_noisy_codec.decode_batch(frames, keep=(3, 4)) for _ in range(2))
    kept = slice(3 * SAMPLES_PER_FRAME, 4 * SAMPLES_PER_FRAME)
    assert np.abs(a[:, kept] - b[:, kept]).max() > 1e-3
    assert np.isfinite(a).all()


def test_swapped_layers_decode_eagerly(tiny_snac_dir: Path) -> None:
    codec = SnacCodec(SNAC.from_pretrained(str(tiny_snac_dir)), noise=False)
    assert codec.scripted
    codec.set_decoder_layers(codec.decoder_layers)
    assert not codec.scripted  # a compiled layer must not be bypassed by an older copy


class _Untraceable(nn.Module):  # type: ignore[misc]  # torch is untyped here
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this layer cannot run")


def test_a_model_that_cannot_be_scripted_decodes_eagerly(
    tiny_codec: SnacCodec, caplog: pytest.LogCaptureFixture
) -> None:
    stages = [Stage(_Untraceable(), SAMPLES_PER_FRAME, 0)]
    with caplog.at_level(logging.WARNING, logger="app.codec.scripted"):
        assert script_decode(tiny_codec.model.quantizer, stages, torch.float32) is None
    assert "decodes eagerly" in caplog.text
