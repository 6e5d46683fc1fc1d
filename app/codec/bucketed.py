"""A decoder that runs prepared static shapes (CUDA graphs) and decodes the rest eagerly.

`BucketedCodec` is a `FrameCodec`: ``decode_batch`` places the batch in a bucket
(`app.codec.buckets`), runs that bucket's prepared runner on the padded batch and
returns the batch's own samples. A batch no bucket holds, or whose bucket could not
be prepared, goes to the eager codec. A runner comes from ``prepare``: a captured CUDA
graph (`app.codec.cuda_graphs.CudaGraphs.capture`), or, in the CPU tests of the
padding rules, the eager decode of the same static shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.codec.buckets import BucketPlan, Shape, fit, restore
from app.codec.snac import SnacCodec
from app.codec.tokens import Frames
from app.codec.warmup import WarmUpReport, warm_up_shapes
from app.vocab import CODEBOOK_SIZE, TOKENS_PER_FRAME

logger = logging.getLogger(__name__)

Pcm = npt.NDArray[np.float32]
Runner = Callable[[Frames], npt.NDArray[np.float32]]
"""Decodes a batch of exactly its shape, ``(B, L, 7)`` to ``(B, L * 2048)``."""


@dataclass
class BucketCounts:
    prepared: int = 0
    hits: int = 0
    """Batches run by a prepared shape."""
    eager: int = 0
    """Batches decoded eagerly: no bucket holds them, or theirs is not prepared."""
    failures: int = 0
    """Prepared shapes dropped after failing where the eager decode worked."""


class BucketedCodec:
    def __init__(
        self, codec: SnacCodec, plan: BucketPlan, prepare: Callable[[Shape], Runner], what: str
    ) -> None:
        self._codec = codec
        self._plan = plan
        self._prepare = prepare
        self._runners: dict[Shape, Runner] = {}
        self.what = what
        self.counts = BucketCounts()

    @property
    def device(self) -> str:
        return self._codec.device

    @property
    def plan(self) -> BucketPlan:
        return self._plan

    def warm_up(self, stop: Callable[[], bool]) -> WarmUpReport:
        """Prepare every bucket shape, the largest first."""

        def prepare(shape: Shape) -> None:
            self._runners[shape] = self._prepare(shape)
            self.counts.prepared = len(self._runners)

        return warm_up_shapes(self.what, self._plan.shapes(), prepare, stop)

    def decode_batch(
        self, frames: npt.ArrayLike, *, keep: tuple[int, int] | None = None, pad: int = 0
    ) -> Pcm:
        arr = np.asarray(frames, dtype=np.int64)
        placement = None
        if arr.ndim == 3 and arr.shape[0] and arr.shape[1] and _codes_valid(arr):
            placement = self._plan.place(arr.shape[0], arr.shape[1], keep, pad)
        runner = self._runners.get(placement.shape) if placement is not None else None
        if placement is None or runner is None:
            self.counts.eager += 1
            return self._codec.decode_batch(arr, keep=keep, pad=pad)
        try:
            out = runner(fit(arr, placement))
        except Exception as exc:
            pcm = self._codec.decode_batch(arr, keep=keep, pad=pad)  # raises if the input is bad
            self._runners.pop(placement.shape, None)
            self.counts.failures += 1
            self.counts.eager += 1
            logger.warning(
                "%s: %s failed where the eager decode works (%s: %s); that shape decodes "
                "eagerly from now on",
                self.what,
                placement.shape,
                type(exc).__name__,
                exc,
            )
            return pcm
        self.counts.hits += 1
        return restore(out, placement, keep, pad)

    def encode(self, pcm: npt.ArrayLike) -> Frames:
        return self._codec.encode(pcm)


def _codes_valid(frames: Frames) -> bool:
    # The eager codec refuses out-of-range codes with a clear error: leave those to it.
    in_range = frames.min() >= 0 and frames.max() < CODEBOOK_SIZE
    return bool(frames.shape[-1] == TOKENS_PER_FRAME and in_range)
