"""Random-weight SNAC 24 kHz checkpoints, for tests and the demo (nothing is downloaded).

The rates and strides are the real ones, so frames, hops, receptive fields and
therefore every windowing property are those of hubertsiuzdak/snac_24khz; only
the widths shrink with ``tiny=True`` so a decode takes milliseconds. PyTorch's
default initialisation already gives a loud, broadband signal (RMS about 0.1-0.6
through the final tanh), so no extra scaling is applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from app.codec.snac import CONFIG_FILE, SNAC, SNAC_24KHZ_CONFIG, WEIGHTS_FILE

TINY_DIMS: dict[str, int] = {"encoder_dim": 8, "decoder_dim": 64}


def random_snac_config(*, tiny: bool = True) -> dict[str, Any]:
    """The 24 kHz config, with small widths when ``tiny``."""
    config = dict(SNAC_24KHZ_CONFIG)
    if tiny:
        config.update(TINY_DIMS)
    return config


def write_random_snac(directory: Path, *, tiny: bool = True, seed: int = 0) -> Path:
    """Write ``config.json`` and ``pytorch_model.bin`` of a random SNAC; returns ``directory``.

    Deterministic for a given seed, and leaves torch's global RNG as it was.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = random_snac_config(tiny=tiny)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SNAC(**config)
    torch.save(_legacy_weight_norm_keys(model.state_dict()), directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def _legacy_weight_norm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Spell weight norm as ``weight_g``/``weight_v``, the layout of checkpoints saved with
    ``torch.nn.utils.weight_norm``; snac's parametrized modules convert it on load, so the
    tests go through that conversion as a real checkpoint would."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        renamed[key] = value.detach().clone()
    return renamed
