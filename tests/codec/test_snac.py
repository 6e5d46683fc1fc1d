from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.codec.snac import (
    SNAC,
    CodecLoadError,
    SnacCodec,
    load_codec,
    remove_noise,
)
from app.codec.tokens import frames_to_codes


def random_frames(n: int, seed: int = 0, batch: int | None = None) -> np.ndarray:
    shape = (n, 7) if batch is None else (batch, n, 7)
    return np.random.default_rng(seed).integers(0, 4096, shape)


def test_folded_decode_equals_the_parametrized_model(
    tiny_snac_dir: Path, tiny_codec: SnacCodec
) -> None:
    reference = SNAC.from_pretrained(str(tiny_snac_dir))
    remove_noise(reference)
    frames = random_frames(12)
    codes = [torch.from_numpy(c)[None] for c in frames_to_codes(frames)]
    with torch.inference_mode():
        want = reference.decode(codes).reshape(-1).numpy()
    got = tiny_codec.decode(frames)
    assert got.dtype == np.float32
    assert got.shape == (12 * SAMPLES_PER_FRAME,)
    assert float(np.abs(want).std()) > 0.01, "the random model must make a real signal"
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not any(parametrize.is_parametrized(m) for m in tiny_codec.model.modules())
    assert any(parametrize.is_parametrized(m) for m in reference.modules())


def test_decode_batch_equals_decode_per_item(tiny_codec: SnacCodec) -> None:
    frames = random_frames(5, seed=1, batch=3)
    batch = tiny_codec.decode_batch(frames)
    assert batch.shape == (3, 5 * SAMPLES_PER_FRAME)
    for item, row in zip(frames, batch, strict=True):
        np.testing.assert_allclose(row, tiny_codec.decode(item), atol=1e-5)


def test_noise_switch(tiny_codec: SnacCodec, tiny_noisy_codec: SnacCodec) -> None:
    frames = random_frames(4, seed=2)
    np.testing.assert_array_equal(tiny_codec.decode(frames), tiny_codec.decode(frames))
    a, b = tiny_noisy_codec.decode(frames), tiny_noisy_codec.decode(frames)
    assert np.abs(a - b).max() > 1e-3, "noise on: two decodes of the same codes differ"


def test_decode_validates_frames(tiny_codec: SnacCodec) -> None:
    assert tiny_codec.decode(np.zeros((0, 7), np.int64)).shape == (0,)
    assert tiny_codec.decode(np.zeros((1, 7), np.int64)).shape == (SAMPLES_PER_FRAME,)
    frames = random_frames(2)
    frames[1, 6] = 4095
    tiny_codec.decode(frames)
    frames[1, 6] = 4096
    with pytest.raises(ValueError):
        tiny_codec.decode(frames)
    with pytest.raises(ValueError):
        tiny_codec.decode(np.zeros((2, 6), np.int64))
    with pytest.raises(ValueError):
        tiny_codec.decode_batch(np.zeros((2, 7), np.int64))


@pytest.mark.parametrize("samples", [1, SAMPLES_PER_FRAME, 3 * SAMPLES_PER_FRAME + 5])
def test_encode_pads_to_whole_frames_and_decodes_back(tiny_codec: SnacCodec, samples: int) -> None:
    t = np.arange(samples) / SAMPLE_RATE
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    frames = tiny_codec.encode(pcm)
    n = -(-samples // SAMPLES_PER_FRAME)
    assert frames.shape == (n, 7)
    assert frames.dtype == np.int64
    assert frames.min() >= 0 and frames.max() < 4096
    assert tiny_codec.decode(frames).shape == (n * SAMPLES_PER_FRAME,)
    assert tiny_codec.encode(np.zeros(0, np.float32)).shape == (0, 7)
    with pytest.raises(ValueError):
        tiny_codec.encode(np.zeros((2, 10), np.float32))


def test_load_from_local_directory(tiny_snac_dir: Path) -> None:
    codec = load_codec(str(tiny_snac_dir), device="auto", noise=False)
    assert codec.sample_rate == SAMPLE_RATE == 24_000
    assert codec.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert codec.noise is False


def test_directory_missing_files(tiny_snac_dir: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_snac_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(CodecLoadError, match=r"lacks pytorch_model\.bin"):
        load_codec(str(tmp_path))
    with pytest.raises(CodecLoadError, match="does not exist"):
        load_codec(str(tmp_path / "nope"))
    with pytest.raises(CodecLoadError, match="does not exist"):
        load_codec("./no/such/snac")


def changed_copy(snac_dir: Path, folder: Path, **config: object) -> str:
    """The SNAC of `snac_dir` copied to `folder`, its config.json changed by `config`."""
    changed = json.loads((snac_dir / "config.json").read_text()) | config
    (folder / "config.json").write_text(json.dumps(changed))
    shutil.copy(snac_dir / "pytorch_model.bin", folder / "pytorch_model.bin")
    return str(folder)


def test_config_that_is_not_24khz(tiny_snac_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CodecLoadError, match="24 kHz"):
        load_codec(changed_copy(tiny_snac_dir, tmp_path, sampling_rate=44_100))


def test_weights_that_do_not_match_the_config(tiny_snac_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CodecLoadError, match="must match"):
        load_codec(changed_copy(tiny_snac_dir, tmp_path, decoder_dim=32))


def test_unreachable_hub_fails_fast_with_a_remedy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(CodecLoadError, match="HF_HUB_OFFLINE") as info:
        load_codec("no-such-owner/no-such-snac", device="cpu")
    assert time.monotonic() - started < 5
    assert "--local-dir" in str(info.value)


def test_unusable_devices(tiny_snac_dir: Path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(CodecLoadError, match="CUDA"):
            load_codec(str(tiny_snac_dir), device="cuda")
    with pytest.raises(CodecLoadError, match="device"):
        load_codec(str(tiny_snac_dir), device="tpu")


def test_codec_rejects_a_non_orpheus_layout() -> None:
    with pytest.raises(CodecLoadError):
        SnacCodec(SNAC(encoder_dim=8, decoder_dim=32, attn_window_size=None))
