"""Decoding only the region a window keeps: SNAC's decoder stage by stage, cropped.

A window decodes its kept frames plus ``context`` frames each side, because the
first decoder layers reach about 2.5 frames. The later blocks, which run at 64x
to 512x the latent rate and took about 80 % of a decode's time here, reach only
a fraction of a frame. So after each stage the activations are cropped to the
kept region plus the receptive radius of the stages still to run: the kept
samples are unchanged (the crop's zero padding never reaches them) while the
context frames no longer go through the expensive blocks. The radii come from
the layers themselves (kernel, dilation, padding, stride); a layer whose reach
is not known (e.g. attention) disables the plan, and windows are decoded whole.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from app.audio.pcm import SAMPLES_PER_FRAME

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from snac.layers import DecoderBlock, NoiseBlock, ResidualUnit, Snake1d


@dataclass(frozen=True)
class Stage:
    module: nn.Module
    rate: int
    """Samples per frame at this stage's output."""
    margin: int
    """Receptive radius of all later stages, in samples of this stage's output."""


class _Unsupported(Exception):
    pass


def plan_stages(layers: nn.Sequential, latent_rate: int) -> list[Stage] | None:
    """The decoder's top-level layers with their output rates and remaining receptive radii,
    or None when a layer's time extent is unknown (then windows are decoded whole)."""
    try:
        margins: list[int] = []
        radius = 0
        for layer in reversed(list(layers)):
            margins.append(radius)
            radius = _radius_in(layer, radius)
        stages: list[Stage] = []
        rate = latent_rate
        for layer, margin in zip(layers, reversed(margins), strict=True):
            rate *= _upsampling(layer)
            stages.append(Stage(layer, rate, margin))
    except _Unsupported:
        return None
    return stages if rate == SAMPLES_PER_FRAME else None


def _radius_in(module: nn.Module, radius: int) -> int:
    """Input samples on each side that outputs within ``radius`` of a region depend on."""
    if isinstance(module, nn.Sequential):
        for child in reversed(list(module)):
            radius = _radius_in(child, radius)
        return radius
    if isinstance(module, DecoderBlock | ResidualUnit):
        # A residual unit adds its input back: the block's reach covers the skip's.
        return _radius_in(module.block, radius)
    if isinstance(module, nn.ConvTranspose1d):
        stride, kernel = module.stride[0], module.kernel_size[0]
        return int(-(-radius // stride) + -(-kernel // stride) + 1)
    if isinstance(module, nn.Conv1d):
        if module.stride[0] != 1:
            raise _Unsupported
        span = module.dilation[0] * (module.kernel_size[0] - 1)
        padding = int(module.padding[0])
        return int(radius + max(padding, span - padding))
    if isinstance(module, Snake1d | NoiseBlock | nn.Identity | nn.Tanh):
        return radius  # pointwise in time
    raise _Unsupported


def _upsampling(module: nn.Module) -> int:
    factor = 1
    for child in module.modules():
        if isinstance(child, nn.ConvTranspose1d):
            factor *= child.stride[0]
    return factor


def run_cropped(
    stages: list[Stage], z: torch.Tensor, n: int, keep: tuple[int, int], pad: int
) -> torch.Tensor:
    """Decode latents ``z`` of ``n`` frames; only the samples of frames ``[lo, hi)`` plus
    ``pad`` each side are computed, the rest of the ``(B, n * 2048)`` result is zero."""
    lo, hi = keep
    x = z
    offset, rate = 0, z.shape[-1] // n
    for stage in stages:
        x = stage.module(x)
        offset *= stage.rate // rate
        rate = stage.rate
        start, stop = crop_bounds(n, lo, hi, pad, rate, stage.margin, SAMPLES_PER_FRAME)
        x = x[..., start - offset : stop - offset]
        offset = start
    return place_kept(x, n, lo, hi, pad, offset, SAMPLES_PER_FRAME)


def crop_bounds(
    n: int, lo: int, hi: int, pad: int, rate: int, margin: int, frame: int
) -> tuple[int, int]:
    """The samples of a stage's output (``rate`` a frame) that frames ``[lo, hi)`` plus
    ``pad`` output samples each side depend on, given the later stages' ``margin``.
    Integer arithmetic only: `app.codec.scripted` runs this in TorchScript."""
    # The pad rounded up to this stage's rate, and +1: rounding may lose a sample.
    extra = margin + (pad * rate + frame - 1) // frame + 1
    return max(0, lo * rate - extra), min(n * rate, hi * rate + extra)


def place_kept(
    x: torch.Tensor, n: int, lo: int, hi: int, pad: int, offset: int, frame: int
) -> torch.Tensor:
    """The ``(B, n * frame)`` result of the last stage's cropped output ``x``, which starts
    at sample ``offset``: the kept samples in place, zeros elsewhere."""
    out = torch.zeros((x.shape[0], n * frame), dtype=x.dtype, device=x.device)
    start = max(0, lo * frame - pad)
    stop = min(n * frame, hi * frame + pad)
    out[:, start:stop] = x.reshape(x.shape[0], -1)[:, start - offset : stop - offset]
    return out
