"""CUDA graphs of the SNAC decode: one per bucket shape, all in one memory pool.

Replaying a graph launches a whole decode (a few hundred kernels) in one call, without
Python and launch overhead per kernel. All graphs are captured into one memory pool,
largest first, so each smaller one reuses what the larger ones freed; the Scicom API
gives each graph a pool of its own, which costs memory and start-up time. Sharing is
safe because the codec worker replays one graph at a time and every graph's output
tensor stays alive (the pool never hands that memory to a later capture).

Every graph reads a view of one static device buffer of frames, written from one
pinned host buffer, and its output comes back through one pinned buffer; both copies
run on a side stream (asynchronous DMA) and replays on a compute stream of their own,
so they neither wait on nor hold up work on the default stream (an in-process engine).
Captures are thread-local: other threads may keep using the GPU meanwhile.
"""

from __future__ import annotations

from functools import partial
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.bucketed import Runner
from app.codec.buckets import BucketPlan, Shape
from app.codec.snac import SnacCodec
from app.codec.tokens import Frames
from app.vocab import CODEBOOK_SIZE, TOKENS_PER_FRAME

Pcm = npt.NDArray[np.float32]
WARM_RUNS: Final = 3
"""Eager runs before a capture: lazy initialisation, cuDNN's algorithm choice and
TorchScript's profiling runs must happen before it, not inside it."""


class CudaGraphs:
    """Captures the graphs of one codec; ``capture`` is the ``prepare`` of a `BucketedCodec`."""

    def __init__(self, codec: SnacCodec, plan: BucketPlan) -> None:
        if not str(codec.device).startswith("cuda"):
            raise ValueError(f"CUDA graphs need a CUDA device, the codec is on {codec.device}")
        device = torch.device(codec.device)
        frames = max(s.batch * s.length for s in plan.shapes())
        self._codec = codec
        self._device = device
        self._frames = torch.zeros(frames * TOKENS_PER_FRAME, dtype=torch.int64, device=device)
        self._host_in = torch.empty(frames * TOKENS_PER_FRAME, dtype=torch.int64, pin_memory=True)
        self._host_out = torch.empty(
            frames * SAMPLES_PER_FRAME, dtype=torch.float32, pin_memory=True
        )
        self._pool = torch.cuda.graph_pool_handle()
        self._compute = torch.cuda.Stream(device)
        self._copy = torch.cuda.Stream(device)
        self.captured = 0

    def capture(self, shape: Shape) -> Runner:
        """Capture the decode of ``shape`` (its crop included) and return its replay."""
        size = shape.batch * shape.length * TOKENS_PER_FRAME
        frames = self._frames[:size].view(shape.batch, shape.length, TOKENS_PER_FRAME)

        def decode() -> torch.Tensor:
            return self._codec.decode_frames(frames, keep=shape.keep, pad=shape.pad).float()

        with torch.inference_mode():
            frames.random_(0, CODEBOOK_SIZE)
            self._compute.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(self._compute):
                for _ in range(WARM_RUNS):
                    decode()
            self._compute.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(
                graph, pool=self._pool, stream=self._compute, capture_error_mode="thread_local"
            ):
                out = decode()
        self.captured += 1
        return partial(self._replay, graph, frames, out)

    def _replay(
        self, graph: torch.cuda.CUDAGraph, frames: torch.Tensor, out: torch.Tensor, batch: Frames
    ) -> Pcm:
        """The output of ``graph`` on ``batch``: a view of the pinned buffer, valid until
        the next replay (`app.codec.buckets.restore` copies what it keeps)."""
        host_in = self._host_in[: batch.size]
        host_out = self._host_out[: out.numel()]
        np.copyto(host_in.numpy(), np.ascontiguousarray(batch, dtype=np.int64).reshape(-1))
        with torch.inference_mode():
            with torch.cuda.stream(self._copy):
                frames.view(-1).copy_(host_in, non_blocking=True)
            self._compute.wait_stream(self._copy)
            with torch.cuda.stream(self._compute):
                graph.replay()
            self._copy.wait_stream(self._compute)
            with torch.cuda.stream(self._copy):
                host_out.copy_(out.reshape(-1), non_blocking=True)
            self._copy.synchronize()
        pcm: Pcm = host_out.numpy().reshape(tuple(out.shape))
        return pcm
