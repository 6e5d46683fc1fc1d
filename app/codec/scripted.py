"""SNAC's windowed decode as one TorchScript call on the CPU: the GIL taken once a window.

Eagerly, a decode is a few hundred small torch ops, and each gives Python's GIL up and
takes it back. Beside a busy thread (the event loop at load) every retake can wait out
the interpreter's switch interval: a one-frame window of the tiny test codec took 0.86 s
instead of 3 ms there, and each hand-off costs the loop a wake-up of the codec thread
too. Here the latents and every decoder stage are traced, and one scripted function runs
them with the crop of `receptive.run_cropped` between stages, so the whole window runs in
TorchScript's interpreter without the GIL: the same ops in the same order, sample for
sample the eager result (tests compare the two). A model that cannot be traced decodes
eagerly as before.
"""

# No `from __future__ import annotations`: TorchScript reads the class annotations as types.
import logging
import warnings
from typing import Any

import torch
from torch import nn

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.receptive import Stage, crop_bounds, place_kept
from app.codec.tokens import C1_SLOTS, C2_SLOTS
from app.vocab import TOKENS_PER_FRAME

log = logging.getLogger(__name__)

_EXAMPLE_FRAMES = 7
"""Frames of the example window the stages are traced with (a one-frame window's length)."""


class _Latents(nn.Module):  # type: ignore[misc]  # torch is untyped here
    """Codes in token order ``(B, n, 7)`` to the decoder's input latents."""

    def __init__(self, quantizer: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.dtype = dtype

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        latents: torch.Tensor = self.quantizer.from_codes(codebook_codes(frames))
        return latents.to(self.dtype)


def codebook_codes(frames: torch.Tensor) -> list[torch.Tensor]:
    """``(B, n, 7)`` codes in token order to SNAC's three levels ``(B, n)``, ``(B, 2n)``,
    ``(B, 4n)``. Basic indexing only: a list index is copied to the device on every call,
    which a CUDA graph cannot capture."""
    batch = frames.shape[0]
    return [frames[..., 0]] + [
        torch.stack([frames[..., i] for i in slots], dim=-1).reshape(batch, -1)
        for slots in (C1_SLOTS, C2_SLOTS)
    ]


class _CroppedDecode(nn.Module):  # type: ignore[misc]  # torch is untyped here
    """`receptive.run_cropped` over traced stages (its crop arithmetic is TorchScript's too)."""

    rates: list[int]
    margins: list[int]
    samples: int

    def __init__(
        self, latents: nn.Module, stages: list[nn.Module], rates: list[int], margins: list[int]
    ) -> None:
        super().__init__()
        self.latents = latents
        self.stages = nn.ModuleList(stages)
        self.rates = rates
        self.margins = margins
        self.samples = SAMPLES_PER_FRAME  # TorchScript reads no module-level names

    def forward(self, frames: torch.Tensor, lo: int, hi: int, pad: int) -> torch.Tensor:
        n, frame = frames.shape[1], self.samples
        x = self.latents(frames)
        offset = 0
        rate = x.shape[-1] // n
        for i, stage in enumerate(self.stages):
            x = stage(x)
            offset = offset * (self.rates[i] // rate)
            rate = self.rates[i]
            start, stop = crop_bounds(n, lo, hi, pad, rate, self.margins[i], frame)
            x = x[:, :, start - offset : stop - offset]
            offset = start
        return place_kept(x, n, lo, hi, pad, offset, frame)


class ScriptedDecode:
    """One scripted call per window: ``(B, n, 7)`` int64 codes to ``(B, n * 2048)``."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __call__(self, frames: torch.Tensor, keep: tuple[int, int], pad: int) -> torch.Tensor:
        out: torch.Tensor = self._module(frames, keep[0], keep[1], pad)
        return out


def script_decode(
    quantizer: nn.Module, stages: list[Stage], dtype: torch.dtype
) -> ScriptedDecode | None:
    """The scripted decode of a CPU model whose decoder runs as ``stages``; None (and a
    warning) when tracing or scripting fails, and windows are decoded eagerly."""
    example = torch.zeros((1, _EXAMPLE_FRAMES, TOKENS_PER_FRAME), dtype=torch.int64)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            # torch deprecates TorchScript and warns about traced shapes; the tests check
            # that every window shape decodes as the eager model does.
            warnings.simplefilter("ignore")
            latents = torch.jit.trace(_Latents(quantizer, dtype), example, check_trace=False)
            x = latents(example)
            traced = []
            for stage in stages:
                traced.append(torch.jit.trace(stage.module, x, check_trace=False))
                x = stage.module(x)
            module = _CroppedDecode(
                latents, traced, [s.rate for s in stages], [s.margin for s in stages]
            )
            scripted = torch.jit.freeze(torch.jit.script(module).eval())
    except Exception as exc:  # an unexpected layer or a torch without TorchScript
        log.warning("the codec decodes eagerly: its decoder could not be scripted (%r)", exc)
        return None
    return ScriptedDecode(scripted)
