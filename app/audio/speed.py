"""Tempo change with the pitch kept, continuous across the chunks of one stream.

One FFmpeg filter graph (abuffer -> atempo... -> abuffersink) lives for the whole
stream: atempo overlaps windows across chunk boundaries, so resetting it per chunk
would click and drift in length.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Final

import av
import av.filter
import numpy as np
import numpy.typing as npt

from app.audio.pcm import SAMPLE_RATE

MIN_SPEED: Final = 0.25
MAX_SPEED: Final = 4.0

# atempo accepts 0.5..100, but above 2 it drops samples instead of blending them;
# staying within 0.5..2 per stage keeps the quality of every stage.
_STAGE_MIN: Final = 0.5
_STAGE_MAX: Final = 2.0
# atempo sizes its output frames like its input frames and passes one on only once it is
# full, so it holds back up to one input frame beyond its ~43 ms window: a chunk pushed
# whole waited for the next chunk (the first chunk all of it, +90-400 ms before the first
# byte). Pushed in pieces of 21 ms the hold is the window (docs/streaming.md); the output
# samples are the same.
_PUSH_SAMPLES: Final = 512


def atempo_stages(speed: float) -> list[float]:
    """Equal factors within [0.5, 2] whose product is ``speed`` (fewest stages)."""
    count = max(1, math.ceil(abs(math.log2(speed)) - 1e-9))
    factor = speed ** (1.0 / count)
    return [min(_STAGE_MAX, max(_STAGE_MIN, factor))] * count


class TempoStream:
    def __init__(self, speed: float) -> None:
        if not MIN_SPEED <= speed <= MAX_SPEED:  # also rejects NaN
            raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
        self.speed = speed
        self._passthrough = speed == 1.0
        self._graph: Any = None if self._passthrough else _build_graph(speed)
        self._time_base = Fraction(1, SAMPLE_RATE)
        self._pts = 0
        self._flushed = False

    def process(self, pcm: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Feed mono float32 samples; return what the tempo stage has ready (may be empty)."""
        samples = np.asarray(pcm, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono PCM as a 1-D array, got shape {samples.shape}")
        if self._flushed:
            raise RuntimeError("TempoStream already flushed")
        if self._passthrough or samples.size == 0:
            return samples
        for start in range(0, samples.size, _PUSH_SAMPLES):
            self._push(samples[start : start + _PUSH_SAMPLES])
        return self._drain()

    def _push(self, piece: npt.NDArray[np.float32]) -> None:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(piece).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += piece.size
        self._graph.push(frame)

    def flush(self) -> npt.NDArray[np.float32]:
        """End of stream: return the samples atempo still holds."""
        if self._flushed:
            return np.zeros(0, dtype=np.float32)
        self._flushed = True
        if self._passthrough:
            return np.zeros(0, dtype=np.float32)
        self._graph.push(None)
        return self._drain()

    def _drain(self) -> npt.NDArray[np.float32]:
        chunks: list[npt.NDArray[np.float32]] = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            chunks.append(frame.to_ndarray().reshape(-1))
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)


def _build_graph(speed: float) -> Any:
    graph = av.filter.Graph()
    nodes = [
        graph.add_abuffer(
            sample_rate=SAMPLE_RATE,
            format="flt",
            layout="mono",
            time_base=Fraction(1, SAMPLE_RATE),
        )
    ]
    nodes += [graph.add("atempo", f"{factor:.9g}") for factor in atempo_stages(speed)]
    # Pin the sink to flt mono so to_ndarray() always yields float32 samples.
    nodes.append(
        graph.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={SAMPLE_RATE}")
    )
    nodes.append(graph.add("abuffersink"))
    graph.link_nodes(*nodes)
    graph.configure()
    return graph
