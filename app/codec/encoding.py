"""Encoding a long clip in slices whose codes equal one encode of the whole clip.

A 30 s reference took the codec worker for seconds in one call (≈10 s for the full
SNAC on CPU), while every live stream's windows waited behind it. Encoded in slices
of a few frames, the worker can serve decode windows in between.

SNAC's encoder is convolutional with a finite receptive field (about 2 frames of
audio either side, measured: `ENCODER_CONTEXT_FRAMES` keeps a margin) and its
quantizer pools whole frames, so a slice that starts on a frame boundary and carries
that much real audio either side encodes its own frames exactly as the whole clip
does; at the clip's ends the slice sees the same zero padding the whole encode does.
`tests/codec/test_encoding.py` checks the equality against one whole encode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.tokens import Frames
from app.vocab import TOKENS_PER_FRAME

ENCODER_CONTEXT_FRAMES: Final = 3
"""Frames of real audio each side of a slice (2 suffice for SNAC 24 kHz; one spare)."""
ENCODE_SLICE_FRAMES: Final = 8
"""Frames a slice contributes: with its context 14 frames, ≈0.25 s of the full codec
on one CPU core, a few ms on a GPU."""


@dataclass(frozen=True)
class EncodeSlice:
    start: int
    """First sample of the audio encoded (a frame boundary)."""
    end: int
    """Sample after the last one encoded."""
    keep: tuple[int, int]
    """Frames of that encoding which are the clip's frames ``first .. first + n``."""
    first: int
    """The clip's first frame this slice yields."""


def plan_slices(
    samples: int,
    *,
    slice_frames: int = ENCODE_SLICE_FRAMES,
    context_frames: int = ENCODER_CONTEXT_FRAMES,
) -> list[EncodeSlice]:
    """Slices covering a clip of `samples` samples; their kept frames, in order, are the
    ``ceil(samples / 2048)`` frames of the whole encode."""
    if slice_frames < 1 or context_frames < 0:
        raise ValueError("slice_frames must be >= 1 and context_frames >= 0")
    total = -(-samples // SAMPLES_PER_FRAME)
    slices = []
    for first in range(0, total, slice_frames):
        last = min(total, first + slice_frames)
        lo, hi = max(0, first - context_frames), min(total, last + context_frames)
        slices.append(
            EncodeSlice(
                start=lo * SAMPLES_PER_FRAME,
                end=min(samples, hi * SAMPLES_PER_FRAME),
                keep=(first - lo, last - lo),
                first=first,
            )
        )
    return slices


class SlicedEncode:
    """One clip's encode, advanced a slice at a time by `step`."""

    def __init__(
        self,
        pcm: npt.NDArray[np.float32],
        *,
        slice_frames: int = ENCODE_SLICE_FRAMES,
        context_frames: int = ENCODER_CONTEXT_FRAMES,
    ) -> None:
        self.pcm = pcm
        self._slices = plan_slices(
            len(pcm), slice_frames=slice_frames, context_frames=context_frames
        )
        self._done: list[Frames] = []

    @property
    def finished(self) -> bool:
        return len(self._done) == len(self._slices)

    def step(self, encode: Callable[[npt.NDArray[np.float32]], npt.NDArray[Any]]) -> None:
        """Encode the next slice with `encode` (a codec's whole-clip encode)."""
        piece = self._slices[len(self._done)]
        codes = np.asarray(encode(self.pcm[piece.start : piece.end]), dtype=np.int64)
        lo, hi = piece.keep
        if codes.shape[0] < hi:
            raise ValueError(f"the codec returned {codes.shape[0]} frames for a slice of {hi}")
        self._done.append(codes[lo:hi])

    def frames(self) -> Frames:
        """The clip's frames ``(n, 7)``, once `finished`."""
        if not self.finished:
            raise RuntimeError("the encode is not finished")
        if not self._done:
            return np.zeros((0, TOKENS_PER_FRAME), dtype=np.int64)
        return np.concatenate(self._done)


class SliceTimes:
    """How long the worker may be held by one encode slice: the longest of the last
    few slices, so a window planned now allows for a slice that started just before it."""

    def __init__(self, keep: int = 4) -> None:
        self._recent: deque[float] = deque(maxlen=keep)
        self.longest = 0.0
        """Seconds; 0 until a slice was timed."""

    def record(self, seconds: float) -> None:
        self._recent.append(max(0.0, seconds))
        self.longest = max(self._recent)


def probe_clip(
    slice_frames: int = ENCODE_SLICE_FRAMES, context_frames: int = ENCODER_CONTEXT_FRAMES
) -> npt.NDArray[np.float32]:
    """Silence as long as one slice with its context either side: timing its encode tells
    what a slice costs before any reference arrives."""
    return np.zeros((slice_frames + 2 * context_frames) * SAMPLES_PER_FRAME, dtype=np.float32)
