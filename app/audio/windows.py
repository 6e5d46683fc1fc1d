"""Which frames to decode when: context windows and the chunk schedule.

SNAC's decoder is not causal: a sample depends on about 2.3 coarse frames on
each side. Decoding frames ``[start, end)`` and keeping only ``[keep_start,
keep_end)`` reproduces one offline decode of the whole stream (to float error)
when both sides carry ``context=3`` frames, except at the true stream start and
end, where the offline decode sees the same zero padding as the window does.

How many frames each window keeps is the chunk schedule's choice
(`app.audio.schedule`): small while the listener holds little audio, larger
(decoding fewer context frames per emitted frame) while it holds plenty.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.audio.schedule import ChunkSchedule, DoublingSchedule


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

    Call `plan` whenever frames arrived (``available`` = total frames so far, ``now`` =
    the time) and once with ``final=True`` at the end; each frame is emitted exactly
    once, in order, with ``context`` frames of look-ahead. How many of the decodable
    frames each window keeps is the `ChunkSchedule`'s choice (default: the fixed
    doubling plan of ``first_frames`` growing by ``growth``). The final flush emits the
    rest without look-ahead (the stream ends there), in windows of at most
    ``max_frames``.
    """

    def __init__(
        self,
        context: int = 3,
        first_frames: int = 1,
        max_frames: int = 16,
        growth: float = 2.0,
        *,
        schedule: ChunkSchedule | None = None,
    ) -> None:
        if context < 0:
            raise ValueError("context must be >= 0")
        self.schedule = schedule or DoublingSchedule(first_frames, max_frames, growth)
        self.context = context
        self.first_frames = first_frames
        self.max_frames = max_frames
        self.growth = growth
        self._emitted = 0
        self._available = 0
        self._finished = False

    @property
    def emitted(self) -> int:
        """Frames emitted (planned for output) so far."""
        return self._emitted

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def ready(self) -> int:
        """Frames that could be emitted now (their look-ahead exists) but are not yet."""
        return max(0, self._available - self.context - self._emitted)

    def deadline(self) -> float | None:
        """When to call `plan` again even if no frame arrives (the schedule holds frames
        back and the listener would run dry), or None."""
        return None if self._finished else self.schedule.deadline(self.ready)

    def plan(self, available: int, final: bool = False, now: float = 0.0) -> list[Window]:
        """Windows that can be decoded now that ``available`` frames exist."""
        if available < self._available:
            raise ValueError(f"available went back from {self._available} to {available}")
        if self._finished:
            if available != self._available:
                raise ValueError("frames arrived after the final flush")
            return []
        self._available = available
        self.schedule.arrived(available, now)
        windows: list[Window] = []
        while True:
            if final:
                size = min(available - self._emitted, self.max_frames)
            else:
                size = min(self.schedule.size(self.ready, now), self.ready, self.max_frames)
            if size <= 0:
                break
            windows.append(self._window(size, available))
            self.schedule.emitted(size, now)
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
