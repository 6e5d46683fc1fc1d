"""The SNAC 24 kHz codec: loading, decoding frames to PCM and encoding PCM to frames.

The model is prepared once for inference: weight norm is folded into plain
weights (the parametrization otherwise recomputes every weight on every call,
10-20 % of a 4-frame window's CPU time in docs/benchmarks.md, for identical
output), and with ``noise=False`` the decoder's noise blocks
(``x + randn * linear(x)``) become identities, so decoding is a deterministic
function of the codes and windowed decoding can match one offline decode exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn.utils import parametrize

with warnings.catch_warnings():
    # snac.layers applies torch.jit.script at import, which torch now deprecates.
    warnings.simplefilter("ignore", DeprecationWarning)
    from snac import SNAC
    from snac.layers import NoiseBlock

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.codec.receptive import plan_stages, run_cropped
from app.codec.scripted import ScriptedDecode, codebook_codes, script_decode
from app.codec.tokens import Frames, codes_to_frames
from app.vocab import CODEBOOK_SIZE, TOKENS_PER_FRAME

__all__ = [
    "CONFIG_FILE",
    "DECODE_DTYPES",
    "SNAC",
    "SNAC_24KHZ_CONFIG",
    "WEIGHTS_FILE",
    "CodecLoadError",
    "SnacCodec",
    "fold_weight_norm",
    "load_codec",
    "remove_noise",
]

SNAC_24KHZ_CONFIG: Final[dict[str, Any]] = {
    "sampling_rate": 24000,
    "encoder_dim": 48,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1024,
    "decoder_rates": [8, 8, 4, 2],
    "attn_window_size": None,
    "codebook_size": 4096,
    "codebook_dim": 8,
    "vq_strides": [4, 2, 1],
    "noise": True,
    "depthwise": True,
}
"""hubertsiuzdak/snac_24khz; the `snac` constructor's defaults are the 44.1 kHz model."""

CONFIG_FILE: Final = "config.json"
WEIGHTS_FILE: Final = "pytorch_model.bin"

Pcm = npt.NDArray[np.float32]


DECODE_DTYPES: Final = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

RECEPTIVE_FIELD_FRAMES = 3
"""Frames of context each side after which a window decode equals the full decode
(measured for SNAC 24 kHz; see docs/streaming.md)."""


class CodecLoadError(Exception):
    """The codec could not be loaded; the message says what to do about it."""


class SnacCodec:
    """An inference-ready SNAC 24 kHz model (folded weight norm, optional noise).

    ``decode(frames, keep=(lo, hi), pad=X)`` computes only what the samples of
    frames ``[lo, hi)`` (plus ``X`` samples each side) depend on: after every
    decoder stage the activations are cropped to that region plus the receptive
    radius of the stages still to run, so the expensive high-rate stages skip
    the context frames. Those samples equal the full window decode; the others
    are returned as zeros, so the result keeps the window's length. On the CPU
    the whole decode is one TorchScript call (`scripted`), without the GIL.
    """

    def __init__(
        self,
        model: SNAC,
        *,
        noise: bool = True,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        script: bool = True,
    ) -> None:
        """``dtype``: the decoder's precision; codes, the quantizer and encoding stay float32
        (a half-precision nearest-code search would pick other codes). ``script``: on the
        CPU, decode through TorchScript (`app.codec.scripted`; False: eagerly)."""
        _check_config(model.sampling_rate, int(model.hop_length), list(model.vq_strides))
        model = model.eval()
        fold_weight_norm(model)
        if not noise:
            remove_noise(model)
        self.model: SNAC = model.to(device)
        self.model.decoder.to(dtype)
        self.noise = noise
        self.device = device
        self.dtype = dtype
        self.sample_rate: int = SAMPLE_RATE
        self._stages = plan_stages(model.decoder.model, SAMPLES_PER_FRAME // int(model.hop_length))
        self._scripted: ScriptedDecode | None = None
        if script and device == "cpu" and self._stages is not None:
            # On a GPU the ops are launches and CUDA graphs or torch.compile replace them.
            self._scripted = script_decode(self.model.quantizer, self._stages, dtype)

    @property
    def scripted(self) -> bool:
        """Windows decode in one TorchScript call (not eagerly, op by op)."""
        return self._scripted is not None

    @property
    def decoder_layers(self) -> list[nn.Module]:
        """The decoder's top-level layers, the stages a cropped decode runs one by one."""
        return list(self.model.decoder.model)

    def set_decoder_layers(self, layers: Sequence[nn.Module]) -> None:
        """Swap the top-level layers for equivalent ones (compiled, or the originals back)."""
        sequence = self.model.decoder.model
        if len(layers) != len(sequence):
            raise ValueError(f"expected {len(sequence)} decoder layers, got {len(layers)}")
        for i, layer in enumerate(layers):
            sequence[i] = layer
        self._scripted = None  # it holds copies of the layers replaced
        if self._stages is not None:
            self._stages = [
                dataclasses.replace(stage, module=layer)
                for stage, layer in zip(self._stages, layers, strict=True)
            ]

    def decode(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> Pcm:
        """PCM ``(n * 2048,)`` float32 of ``(n, 7)`` frames (codes in token order)."""
        arr = np.asarray(frames, dtype=np.int64)
        if arr.ndim != 2:
            raise ValueError(f"decode expects frames of shape (n, 7), got {arr.shape}")
        pcm: Pcm = self.decode_batch(arr[None], keep=keep, pad=pad)[0]
        return pcm

    def decode_batch(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> Pcm:
        """PCM ``(B, n * 2048)`` of ``B`` same-length windows ``(B, n, 7)`` in one call.

        ``keep``, frame offsets ``(lo, hi)`` within the windows, limits the work to
        the samples of those frames plus ``pad`` samples each side (see the class).
        """
        arr = np.asarray(frames, dtype=np.int64)
        if arr.ndim != 3 or arr.shape[-1] != TOKENS_PER_FRAME:
            raise ValueError(f"decode_batch expects frames of shape (B, n, 7), got {arr.shape}")
        batch, n, _ = arr.shape
        if n == 0 or batch == 0:
            return np.zeros((batch, n * SAMPLES_PER_FRAME), dtype=np.float32)
        if keep is not None and not (0 <= keep[0] < keep[1] <= n and pad >= 0):
            raise ValueError(f"keep {keep} / pad {pad} do not fit a window of {n} frames")
        if arr.min() < 0 or arr.max() >= CODEBOOK_SIZE:
            # On CUDA an out-of-range code is a device-side assert that ends the process.
            raise ValueError(f"codes must lie in [0, {CODEBOOK_SIZE})")
        with torch.inference_mode():
            audio = self.decode_frames(torch.from_numpy(arr).to(self.device), keep=keep, pad=pad)
        return np.ascontiguousarray(audio.float().cpu().numpy())

    def decode_frames(
        self, frames: torch.Tensor, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> torch.Tensor:
        """`decode_batch` as torch ops on the device: ``(B, n, 7)`` int64 codes to
        ``(B, n * 2048)`` in ``dtype``, unchecked; what CUDA graphs capture."""
        batch, n = int(frames.shape[0]), int(frames.shape[1])
        if self._scripted is not None:
            return self._scripted(frames, keep or (0, n), pad)
        z = self.model.quantizer.from_codes(codebook_codes(frames)).to(self.dtype)
        if keep is None or self._stages is None or keep == (0, n):
            return self.model.decoder(z).reshape(batch, -1)
        return run_cropped(self._stages, z, n, keep, pad)

    def encode(self, pcm: npt.ArrayLike) -> Frames:
        """Frames ``(n, 7)`` of mono 24 kHz float PCM, zero-padded to whole frames."""
        audio = np.asarray(pcm, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"encode expects mono PCM of shape (samples,), got {audio.shape}")
        if audio.shape[0] == 0:
            return np.zeros((0, TOKENS_PER_FRAME), dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(audio)).to(self.device)[None, None]
        with torch.inference_mode():
            c0, c1, c2 = (c[0].cpu().numpy() for c in self.model.encode(x))
        return codes_to_frames(c0, c1, c2)


def fold_weight_norm(model: nn.Module) -> int:
    """Replace every weight-norm parametrization by its current weight; returns how many."""
    folded = 0
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            folded += 1
    return folded


def remove_noise(model: nn.Module) -> int:
    """Replace every `NoiseBlock` by an identity; returns how many."""
    removed = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, NoiseBlock):
                setattr(module, name, nn.Identity())
                removed += 1
    return removed


def load_codec(
    source: str,
    *,
    device: str = "auto",
    noise: bool = True,
    dtype: str = "float32",
    script: bool = True,
) -> SnacCodec:
    """Load SNAC 24 kHz from a local directory or a Hugging Face hub id.

    A directory needs ``config.json`` and ``pytorch_model.bin``. A hub id is
    fetched with huggingface_hub (cached; ``HF_HUB_OFFLINE=1`` uses the cache only).
    ``dtype`` (float32, bfloat16, float16) is the decoder's precision.
    """
    resolved = _resolve_device(device)
    precision = DECODE_DTYPES.get(dtype)
    if precision is None:
        raise CodecLoadError(f"unknown decode dtype {dtype!r}; use {', '.join(DECODE_DTYPES)}")
    if os.path.isdir(source):
        config_path, weights_path = _local_files(Path(source))
        config = _read_config(config_path, source)
    elif _looks_like_path(source):
        raise CodecLoadError(
            f"codec directory {source!r} does not exist; point SNAC_MODEL at a directory "
            f"with {CONFIG_FILE} and {WEIGHTS_FILE}, or at a hub id such as "
            "'hubertsiuzdak/snac_24khz'"
        )
    else:
        # Check the small config before fetching 80 MB of weights.
        config = _read_config(_hub_file(source, CONFIG_FILE), source)
        weights_path = _hub_file(source, WEIGHTS_FILE)

    model = SNAC(**config)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise CodecLoadError(
            f"cannot load SNAC weights from {weights_path}: {exc}; the weights must match "
            f"{CONFIG_FILE} (re-download the model or fix the config)"
        ) from exc
    codec = SnacCodec(model, noise=noise, device=resolved, dtype=precision, script=script)
    if precision != torch.float32:
        try:  # not every device has every half-precision kernel: say so at start-up
            codec.decode(np.zeros((2, TOKENS_PER_FRAME), dtype=np.int64), keep=(0, 1))
        except Exception as exc:
            raise CodecLoadError(
                f"decoding in {dtype} on {resolved} failed ({type(exc).__name__}: {exc}); "
                "set DECODE_DTYPE=float32"
            ) from exc
    return codec


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CodecLoadError(
            f"device {device!r} requested but CUDA is not available to this torch build; "
            "use device 'cpu' or 'auto'"
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise CodecLoadError(f"unknown codec device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return device


def _looks_like_path(source: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a separator is a path.
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in source


def _local_files(directory: Path) -> tuple[Path, Path]:
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (directory / name).is_file()]
    if missing:
        raise CodecLoadError(
            f"codec directory {str(directory)!r} lacks {', '.join(missing)}; it needs "
            f"{CONFIG_FILE} and {WEIGHTS_FILE} (as in hubertsiuzdak/snac_24khz)"
        )
    return directory / CONFIG_FILE, directory / WEIGHTS_FILE


def _hub_file(repo_id: str, filename: str) -> Path:
    from huggingface_hub import constants, hf_hub_download

    # The cache first: a released codec does not change, and an unreachable hub
    # otherwise costs about 20 s of retries before the cached copy is used.
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, etag_timeout=5))
    except Exception as exc:
        offline = (
            "HF_HUB_OFFLINE is set and the file is not in the cache. "
            if constants.is_offline_mode()
            else ""
        )
        raise CodecLoadError(
            f"cannot fetch {filename} of {repo_id!r} from the Hugging Face hub: {offline}"
            f"{type(exc).__name__}: {exc}. Remedy: on a machine with internet run "
            "`hf download hubertsiuzdak/snac_24khz --local-dir DIR` and point "
            "SNAC_MODEL at DIR (or fill the hub cache)"
        ) from exc


def _read_config(path: Path, source: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CodecLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise CodecLoadError(f"{path} is not a JSON object")
    try:
        _check_config(
            config.get("sampling_rate"),
            math.prod(config.get("encoder_rates") or [0]),
            config.get("vq_strides"),
            config.get("codebook_size", CODEBOOK_SIZE),
        )
    except CodecLoadError as exc:
        raise CodecLoadError(f"{source}: {exc}") from None
    return config


def _check_config(
    sampling_rate: object, hop: int, vq_strides: object, codebook_size: object = CODEBOOK_SIZE
) -> None:
    # Orpheus frames assume exactly this layout: 3 codebooks at strides 4/2/1 of a
    # 512-sample hop, i.e. 2048 samples per 7-token frame at 24 kHz.
    if (
        sampling_rate != SAMPLE_RATE
        or vq_strides != [4, 2, 1]
        or hop * 4 != SAMPLES_PER_FRAME
        or codebook_size != CODEBOOK_SIZE
    ):
        raise CodecLoadError(
            f"not the SNAC 24 kHz layout Orpheus uses (sampling_rate={sampling_rate}, "
            f"hop={hop}, vq_strides={vq_strides}, codebook_size={codebook_size}); use "
            "hubertsiuzdak/snac_24khz or a model with its config"
        )
