"""Joining the decoded windows of one stream into a continuous signal.

With SNAC's noise blocks disabled and enough context (see `app.audio.windows`),
each window's kept samples equal the offline decode, so the right join is the
hard one: ``crossfade_samples=0`` returns exactly the kept samples. Do not
crossfade then: the context samples near a window's edge were decoded without
their own context, so mixing them in would make the stream *less* exact.

With noise on, two decodes of the same codes differ, so a hard seam jumps
between two noise realisations and clicks. ``crossfade_samples = X > 0`` then
blends the seam linearly over ``2X`` samples centred on it: the last ``X`` kept
samples of a chunk are held back and mixed with the next window's left-context
samples, and the next chunk's first ``X`` kept samples are mixed with the
previous window's right-context samples. The blend is clamped, per seam, to
what both windows actually decoded: at most the overlap on each side and half
of either chunk's kept length (a 1-frame chunk allows ``X <= 1024``), so with
the default ``context=3`` and crossfades under 1024 samples nothing is clamped.
Whatever the crossfade, exactly ``frames * SAMPLES_PER_FRAME`` samples come out.

Only the kept samples and ``crossfade_samples`` either side of them are read, so
the pcm may come from ``SnacCodec.decode(frames, keep=..., pad=crossfade_samples)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.audio.pcm import SAMPLES_PER_FRAME
from app.audio.windows import Window

Pcm = npt.NDArray[np.float32]


class SeamJoiner:
    """Turns successive (window, decoded pcm) pairs of one stream into output samples."""

    def __init__(self, crossfade_samples: int = 0) -> None:
        if crossfade_samples < 0:
            raise ValueError("crossfade_samples must be >= 0")
        self.crossfade_samples = crossfade_samples
        self._next_frame = 0
        # Decoded samples of the previous window around its keep end:
        # [seam - held, seam + overlap) in stream samples, where seam = its keep_end.
        self._tail: Pcm = np.zeros(0, dtype=np.float32)
        self._held = 0

    @property
    def held(self) -> int:
        """Samples decoded but held back for the next seam."""
        return self._held

    def push(self, window: Window, pcm: npt.ArrayLike) -> Pcm:
        """Samples ready to send after decoding ``window`` (frames ``[start, end)``) to ``pcm``."""
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if audio.shape[0] != window.frames * SAMPLES_PER_FRAME:
            raise ValueError(
                f"window {window} needs {window.frames * SAMPLES_PER_FRAME} samples, "
                f"got {audio.shape[0]}"
            )
        if window.keep_start != self._next_frame:
            raise ValueError(f"window {window} does not continue at frame {self._next_frame}")
        self._next_frame = window.keep_end

        keep_lo = window.left_context * SAMPLES_PER_FRAME
        keep_hi = keep_lo + window.kept * SAMPLES_PER_FRAME
        kept = audio[keep_lo:keep_hi]
        if self.crossfade_samples == 0:
            return kept.copy()

        parts: list[Pcm] = []
        start = 0
        if self._held:
            overlap = self._tail.shape[0] - self._held
            x = min(self._held, overlap, keep_lo, kept.shape[0] // 2)
            # Held samples before the blend region leave unchanged.
            parts.append(self._tail[: self._held - x])
            if x:
                old = self._tail[self._held - x : self._held + x]
                new = audio[keep_lo - x : keep_lo + x]
                ramp = (np.arange(2 * x, dtype=np.float32) + 0.5) / np.float32(2 * x)
                parts.append(old + ramp * (new - old))
            start = x

        right = window.right_context * SAMPLES_PER_FRAME
        hold = min(self.crossfade_samples, (kept.shape[0] - start), kept.shape[0] // 2, right)
        parts.append(kept[start : kept.shape[0] - hold])
        self._held = hold
        self._tail = audio[keep_hi - hold : keep_hi + hold].copy()
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def finish(self) -> Pcm:
        """The held-back tail (at the stream end there is no next window to blend with)."""
        tail = self._tail[: self._held].copy()
        self._held = 0
        self._tail = np.zeros(0, dtype=np.float32)
        return tail
