from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from app.codec.snac import SNAC_24KHZ_CONFIG, load_codec
from app.demo.random_snac import write_random_snac


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    a = write_random_snac(tmp_path / "a", seed=1)
    b = write_random_snac(tmp_path / "b", seed=1)
    c = write_random_snac(tmp_path / "c", seed=2)
    sa, sb, sc = (torch.load(d / "pytorch_model.bin", weights_only=True) for d in (a, b, c))
    assert sa.keys() == sb.keys() == sc.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_global_rng_is_left_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    write_random_snac(tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_model_has_the_real_rates_and_a_loud_output(tiny_snac_dir: Path) -> None:
    config = json.loads((tiny_snac_dir / "config.json").read_text())
    for key in ("sampling_rate", "encoder_rates", "decoder_rates", "vq_strides", "codebook_size"):
        assert config[key] == SNAC_24KHZ_CONFIG[key]
    assert config["decoder_dim"] < SNAC_24KHZ_CONFIG["decoder_dim"]
    codec = load_codec(str(tiny_snac_dir), device="cpu", noise=False)
    pcm = codec.decode(np.random.default_rng(0).integers(0, 4096, (8, 7)))
    assert float(pcm.std()) > 0.05
    assert float(np.abs(pcm).max()) <= 1.0


def test_full_size_model_uses_the_real_config(tmp_path: Path) -> None:
    directory = write_random_snac(tmp_path, tiny=False)
    assert json.loads((directory / "config.json").read_text()) == SNAC_24KHZ_CONFIG
    codec = load_codec(str(directory), device="cpu", noise=False)
    assert sum(p.numel() for p in codec.model.parameters()) > 19_000_000
