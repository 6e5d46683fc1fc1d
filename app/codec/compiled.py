"""torch.compile for the SNAC decoder (``TORCH_COMPILE=true``), the alternative to CUDA
graphs; it works on CPU too.

Each top-level decoder layer is compiled on its own, with dynamic shapes, and the crop
between them (`app.codec.receptive`) stays in Python, so one compiled layer serves
every batch size, window length and crop. (Compiling the whole cropped decode as one
function made dynamo reason about every crop offset symbolically: on this 2-core
machine it had not finished its first shape after 14 minutes, where the layers take
about 75 s.) Each layer gets a fresh contiguous copy of its input: a crop is a view
whose storage offset and strides differ from crop to crop, and dynamo guarded on them
and recompiled at serving time. The four decoder blocks share one code object and dynamo counts
recompiles per code object (its limit is thread-local configuration, so the worker
thread would not see a raised global), hence a per-layer ``recompile_limit``.

Warm-up decodes every bucket shape once so the compiling happens at start-up; after
it, a shape the compiled code does not cover runs eagerly instead of compiling while
streams wait (dynamo's ``eager_on_recompile`` stance: sizes are dynamic, but convolution
kernels still specialise on size ranges). If a compiled decode fails where the eager
one works, the eager layers are put back for good, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.codec.buckets import BucketPlan, Shape
from app.codec.snac import SnacCodec
from app.codec.tokens import Frames
from app.codec.warmup import WarmUpReport, warm_up_shapes
from app.vocab import CODEBOOK_SIZE, TOKENS_PER_FRAME

logger = logging.getLogger(__name__)

Pcm = npt.NDArray[np.float32]
RECOMPILE_LIMIT: Final = 64
"""Compiled variants per code object: four decoder blocks, each with a first static
shape, then dynamic ones, and a batch of 1 specialized."""


class CompiledCodec:
    """A `FrameCodec` whose decoder layers are compiled with torch.compile."""

    def __init__(self, codec: SnacCodec, plan: BucketPlan) -> None:
        self._codec = codec
        self._plan = plan
        self._eager = codec.decoder_layers
        self._compiled: list[nn.Module] = [
            _Contiguous(torch.compile(layer, dynamic=True, recompile_limit=RECOMPILE_LIMIT))
            for layer in self._eager
        ]
        codec.set_decoder_layers(self._compiled)
        self.active = True
        """False once a compiled decode failed and the eager layers are back."""
        self._warm = False

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

        try:
            return warm_up_shapes(
                "torch.compile", self._plan.shapes(), prepare, lambda: stop() or not self.active
            )
        finally:
            self._warm = True

    def decode_batch(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> Pcm:
        if not self.active:
            return self._codec.decode_batch(frames, keep=keep, pad=pad)
        try:
            with torch.compiler.set_stance("eager_on_recompile") if self._warm else nullcontext():
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


class _Contiguous(nn.Module):  # type: ignore[misc]  # torch is untyped here
    def __init__(self, layer: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A copy even of a contiguous view: its storage offset would be guarded on too.
        return self.layer(x.clone(memory_format=torch.contiguous_format))
