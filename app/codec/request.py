"""One decode window as the decoder service sees it, built once by the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.audio.pcm import SAMPLES_PER_FRAME
from app.audio.windows import Window
from app.codec.tokens import Frames
from app.vocab import TOKENS_PER_FRAME


@dataclass(frozen=True, eq=False)
class DecodeRequest:
    """Decode ``frames`` ``(n, 7)``; the samples of frames ``keep = (lo, hi)`` (offsets into
    ``frames``) and ``pad`` samples either side of them must equal ``codec.decode(frames)``,
    the rest may be zeros.

    ``stream`` is the fairness key: one per synthesis, so a stream's burst of windows takes
    turns with the other streams. ``first`` marks a stream's first chunk, served first (time
    to first audio).
    """

    frames: Frames
    keep: tuple[int, int]
    pad: int = 0
    stream: int = 0
    first: bool = False

    def __post_init__(self) -> None:
        # A copy: the pipeline's frame buffer keeps growing while the worker reads this.
        frames = np.array(self.frames, dtype=np.int64)
        if frames.ndim != 2 or frames.shape[1] != TOKENS_PER_FRAME or frames.shape[0] == 0:
            raise ValueError(f"frames must have shape (n >= 1, 7), got {frames.shape}")
        lo, hi = self.keep
        if not 0 <= lo < hi <= frames.shape[0]:
            raise ValueError(f"keep region [{lo}, {hi}) outside {frames.shape[0]} frames")
        if self.pad < 0:
            raise ValueError("pad must be >= 0")
        object.__setattr__(self, "frames", frames)

    @classmethod
    def of(
        cls,
        stream_frames: Frames,
        window: Window,
        *,
        pad: int = 0,
        stream: int = 0,
        first: bool = False,
    ) -> DecodeRequest:
        """The request for ``window`` of a stream whose frames so far are ``stream_frames``."""
        return cls(
            frames=stream_frames[window.start : window.end],
            keep=(window.left_context, window.left_context + window.kept),
            pad=pad,
            stream=stream,
            first=first,
        )

    @property
    def length(self) -> int:
        """Frames decoded."""
        return int(self.frames.shape[0])

    @property
    def exact_region(self) -> tuple[int, int]:
        """``(first, end)``: the frames whose samples must be exact, the kept ones and those
        that ``pad`` reaches into."""
        return exact_region(self.length, self.keep, self.pad)


def exact_region(length: int, keep: tuple[int, int], pad: int) -> tuple[int, int]:
    """``(first, end)`` frames of a ``length``-frame window whose samples must be exact when
    frames ``keep`` and ``pad`` samples either side of them are asked for."""
    reach = -(-pad // SAMPLES_PER_FRAME)
    return max(0, keep[0] - reach), min(length, keep[1] + reach)
