"""torch.compile for the SNAC decoder (``TORCH_COMPILE=true``), the alternative to CUDA
graphs; it works on CPU too.

Each top-level decoder layer is compiled on its own, with dynamic shapes, and the crop
between them (`app.codec.receptive`) stays in Python, so one compiled layer serves
every batch size, window length and crop. (Compiling the whole cropped decode as one
function made dynamo reason about every crop offset symbolically: on this 2-core
machine it had not finished its first shape after 14 minutes, where the layers take
about 75 s.) The four decoder blocks share one code object and dynamo counts
recompiles per code object, so its limit is raised to cover them all, rather than
letting the ninth fall back to eager silently.

Warm-up decodes every bucket shape once so the compiling happens at start-up. If a
compiled decode fails where the eager one works, the eager layers are put back for
good, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from app.codec.buckets import BucketPlan, Shape
from app.codec.snac import SnacCodec
from app.codec.tokens import Frames
from app.codec.warmup import WarmUpReport, warm_up_shapes
from app.vocab import CODEBOOK_SIZE, TOKENS_PER_FRAME

logger = logging.getLogger(__name__)

Pcm = npt.NDArray[np.float32]
RECOMPILE_LIMIT: Final = 64
"""Compiled variants per code object: per layer, a static first shape, a dynamic one,
and a few more where a size of 1 is specialized."""


class CompiledCodec:
    """A `FrameCodec` whose decoder layers are compiled with torch.compile."""

    def __init__(self, codec: SnacCodec, plan: BucketPlan) -> None:
        _raise_recompile_limit()
        self._codec = codec
        self._plan = plan
        self._eager = codec.decoder_layers
        self._compiled = [torch.compile(layer, dynamic=True) for layer in self._eager]
        codec.set_decoder_layers(self._compiled)
        self.active = True
        """False once a compiled decode failed and the eager layers are back."""

    @property
    def device(self) -> str:
        return self._codec.device

    def warm_up(self, stop: Callable[[], bool]) -> WarmUpReport:
        """Compile for every bucket shape now, not on the first requests."""
        rng = np.random.default_rng(0)

        def prepare(shape: Shape) -> None:
            size = (shape.batch, shape.length, TOKENS_PER_FRAME)
            frames = rng.integers(0, CODEBOOK_SIZE, size=size)
            self.decode_batch(frames, keep=shape.keep, pad=shape.pad)

        return warm_up_shapes(
            "torch.compile", self._plan.shapes(), prepare, lambda: stop() or not self.active
        )

    def decode_batch(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> Pcm:
        if not self.active:
            return self._codec.decode_batch(frames, keep=keep, pad=pad)
        try:
            return self._codec.decode_batch(frames, keep=keep, pad=pad)
        except Exception as exc:
            self._codec.set_decoder_layers(self._eager)
            try:
                pcm = self._codec.decode_batch(frames, keep=keep, pad=pad)
            except Exception:
                self._codec.set_decoder_layers(self._compiled)  # the input was bad, not compile
                raise
            self.active = False
            logger.warning(
                "torch.compile'd decode failed where the eager one works (%s: %s); "
                "decoding eagerly from now on",
                type(exc).__name__,
                exc,
            )
            return pcm

    def encode(self, pcm: npt.ArrayLike) -> Frames:
        return self._codec.encode(pcm)


def _raise_recompile_limit() -> None:
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed in torch 2.6
        if hasattr(config, name):
            setattr(config, name, max(int(getattr(config, name)), RECOMPILE_LIMIT))
