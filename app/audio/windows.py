"""Which frames to decode when: context windows and the chunk schedule.

SNAC's decoder is not causal: a sample depends on about 2.3 coarse frames on
each side. Decoding frames ``[start, end)`` and keeping only ``[keep_start,
keep_end)`` reproduces one offline decode of the whole stream (to float error)
when both sides carry ``context=3`` frames, except at the true stream start and
end, where the offline decode sees the same zero padding as the window does.

Chunks start small, so the first audio leaves after ``first_frames + context``
frames, and then grow geometrically: with a backend at twice real time, a chunk
of ``n`` frames starting at frame ``s`` is ready before the listener runs out of
audio as long as ``n <= s + 1``, which doubling from 1 satisfies. Larger chunks
decode fewer context frames per emitted frame, up to ``max_frames``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Decode frames ``[start, end)``, emit the samples of frames ``[keep_start, keep_end)``."""

    start: int
    end: int
    keep_start: int
    keep_end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.keep_start < self.keep_end <= self.end:
            raise ValueError(f"invalid window {self}")

    @property
    def frames(self) -> int:
        """Frames decoded."""
        return self.end - self.start

    @property
    def kept(self) -> int:
        """Frames emitted."""
        return self.keep_end - self.keep_start

    @property
    def left_context(self) -> int:
        return self.keep_start - self.start

    @property
    def right_context(self) -> int:
        return self.end - self.keep_end


class WindowPlanner:
    """Plans the decode windows of one stream as its frames arrive.

    Call `plan` whenever frames arrived (``available`` = total frames so far) and
    once with ``final=True`` at the end; each frame is emitted exactly once, in
    order. A window is planned as soon as the scheduled chunk size plus
    ``context`` look-ahead frames exist; when more has arrived, up to
    ``max_frames`` are taken at once so a fast backend is not throttled. The next
    scheduled size is ``growth`` times the chunk just emitted, capped at
    ``max_frames``. The final flush emits the rest without look-ahead (the stream
    ends there), in windows of at most ``max_frames``.
    """

    def __init__(
        self, context: int = 3, first_frames: int = 1, max_frames: int = 16, growth: float = 2.0
    ) -> None:
        if context < 0:
            raise ValueError("context must be >= 0")
        if first_frames < 1:
            raise ValueError("first_frames must be >= 1")
        if max_frames < first_frames:
            raise ValueError("max_frames must be >= first_frames")
        if growth < 1.0:
            raise ValueError("growth must be >= 1")
        self.context = context
        self.first_frames = first_frames
        self.max_frames = max_frames
        self.growth = growth
        self._emitted = 0
        self._available = 0
        self._next_size = first_frames
        self._finished = False

    @property
    def emitted(self) -> int:
        """Frames emitted (planned for output) so far."""
        return self._emitted

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def next_size(self) -> int:
        """Frames the next non-final chunk needs (plus ``context`` look-ahead)."""
        return self._next_size

    def plan(self, available: int, final: bool = False) -> list[Window]:
        """Windows that can be decoded now that ``available`` frames exist."""
        if available < self._available:
            raise ValueError(f"available went back from {self._available} to {available}")
        if self._finished:
            if available != self._available:
                raise ValueError("frames arrived after the final flush")
            return []
        self._available = available
        windows: list[Window] = []
        while True:
            remaining = available - self._emitted
            if final:
                if remaining <= 0:
                    break
                size = min(remaining, self.max_frames)
            else:
                if remaining < self._next_size + self.context:
                    break
                size = min(remaining - self.context, self.max_frames)
            windows.append(self._window(size, available))
            self._next_size = min(self.max_frames, math.ceil(size * self.growth))
        if final:
            self._finished = True
        return windows

    def _window(self, size: int, available: int) -> Window:
        keep_start = self._emitted
        keep_end = keep_start + size
        # The stream start needs no left context (the offline decode pads with zeros too);
        # a flush window at the stream end gets whatever look-ahead exists.
        window = Window(
            start=keep_start - min(self.context, keep_start),
            end=min(available, keep_end + self.context),
            keep_start=keep_start,
            keep_end=keep_end,
        )
        self._emitted = keep_end
        return window
