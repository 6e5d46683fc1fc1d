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


class SegmentJoiner:
    """Joins the audio of consecutive generations (segments) of one response.

    Each segment is exact in itself; where two meet, the end of the first fades out over
    ``fade_samples`` (raised cosine), ``pause_samples`` of silence follow, and the start
    of the next fades in, so a segment that ends or starts away from zero does not click.
    To fade a segment's end, its last ``fade_samples`` are held back until the segment is
    known to end. Nothing is changed within a segment, nor at the response's own start and
    end: a single-segment response is passed through exactly.
    """

    def __init__(self, fade_samples: int = 0, pause_samples: int = 0) -> None:
        if fade_samples < 0 or pause_samples < 0:
            raise ValueError("fade_samples and pause_samples must be >= 0")
        self.fade = fade_samples
        self.pause = pause_samples
        ramp = (np.arange(fade_samples, dtype=np.float32) + 0.5) / max(fade_samples, 1)
        self._fade_in = (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)
        self._held: Pcm = np.zeros(0, dtype=np.float32)
        self._into_segment = 0  # samples of the current segment passed so far
        self._segments = 0

    def push(self, pcm: npt.ArrayLike, *, last: bool = False) -> Pcm:
        """Samples of the current segment that can be sent now; in the ``last`` segment
        nothing is held back (its end is the response's)."""
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if self._segments and self._into_segment < self.fade:
            audio = audio.copy()
            start = self._into_segment
            n = min(self.fade - start, audio.shape[0])
            audio[:n] *= self._fade_in[start : start + n]
        self._into_segment += audio.shape[0]
        joined = np.concatenate((self._held, audio)) if self._held.size else audio
        cut = joined.shape[0] if last else max(0, joined.shape[0] - self.fade)
        self._held = joined[cut:].copy()
        return joined[:cut]

    def end_segment(self, *, last: bool) -> Pcm:
        """The held-back end of the segment: as it is for the last one, else faded out and
        followed by the pause."""
        tail, self._held = self._held, np.zeros(0, dtype=np.float32)
        self._into_segment = 0
        self._segments += 1
        if last:
            return tail
        faded = tail * self._fade_in[::-1][-tail.shape[0] :] if tail.size else tail
        return np.concatenate((faded, np.zeros(self.pause, dtype=np.float32)))
