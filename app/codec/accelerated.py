"""Which decoder the codec service drives: eager, CUDA graphs or torch.compile.

All three are a `FrameCodec` over the same `SnacCodec`, so the service, its batching
and its exactness rules do not change. Whatever cannot be set up falls back to the
eager decoder with a warning: an accelerator is never a reason not to start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.codec.bucketed import BucketedCodec
from app.codec.buckets import BucketPlan, batch_sizes, window_lengths
from app.codec.service import FrameCodec
from app.codec.snac import RECEPTIVE_FIELD_FRAMES, SnacCodec
from app.codec.warmup import WarmUp

logger = logging.getLogger(__name__)

Mode = Literal["eager", "cuda-graphs", "torch-compile"]


@dataclass(frozen=True)
class Accelerated:
    codec: FrameCodec
    warm_up: WarmUp | None
    """Run on the codec worker before it serves (None: nothing to prepare)."""
    mode: Mode


def bucket_plan(
    window_seconds: Sequence[float] | None,
    *,
    max_window: int,
    max_batch: int,
    context: int,
    pad: int,
) -> BucketPlan:
    """The buckets: ``window_seconds`` (``CUDA_GRAPH_BATCH``) or, for None, every window
    length up to ``max_window`` frames, since a window whose crossfade reaches into its
    context frames may not be padded at all (`app.codec.buckets`)."""
    lengths = range(1, max_window + 1) if window_seconds is None else window_lengths(window_seconds)
    return BucketPlan(
        batch_sizes(max_batch),
        tuple(lengths),
        context=context,
        pad=pad,
        receptive_field=RECEPTIVE_FIELD_FRAMES,
    )


def accelerate(
    codec: SnacCodec, plan: BucketPlan, *, cuda_graphs: bool, torch_compile: bool
) -> Accelerated:
    if cuda_graphs:
        graphs = _bucketed_graphs(codec, plan)
        if graphs is not None:
            return Accelerated(graphs, graphs.warm_up, "cuda-graphs")
    elif torch_compile:
        try:
            from app.codec.compiled import CompiledCodec

            compiled = CompiledCodec(codec, plan)
        except Exception as exc:
            logger.warning("TORCH_COMPILE: cannot compile the decoder (%r); decoding eagerly", exc)
        else:
            return Accelerated(compiled, compiled.warm_up, "torch-compile")
    return Accelerated(codec, None, "eager")


def _bucketed_graphs(codec: SnacCodec, plan: BucketPlan) -> BucketedCodec | None:
    if not str(codec.device).startswith("cuda"):
        logger.warning(
            "CUDA_GRAPHS=true needs a CUDA device but the codec runs on %s: decoding eagerly",
            codec.device,
        )
        return None
    try:
        from app.codec.cuda_graphs import CudaGraphs

        graphs = CudaGraphs(codec, plan)
    except Exception as exc:
        logger.warning("CUDA_GRAPHS: cannot set up graph capture (%r); decoding eagerly", exc)
        return None
    return BucketedCodec(codec, plan, graphs.capture, "CUDA graphs")
