"""How many frames each chunk of a stream takes: the chunk schedule.

A chunk of frames ``[e, e + n)`` can be decoded once ``e + n + context`` frames
exist. Small chunks reach the listener sooner; large ones spend less decode work
on context. `BufferSchedule` (the default) chooses from what the listener already
holds: audio sent so far (after tempo) minus the time since the first audio. While
that buffer is thin it sends whatever is decodable; it lets a chunk grow, toward
``max_frames``, only while the buffer will still hold ``margin`` seconds when the
chunk arrives. At exactly real time, frame k is decodable when frame k + 3 exists,
so after a start-up of ``first_frames`` frames every later frame comes just in
time and chunks stay about ``first_frames`` long; a backend faster than real time
fills the buffer and gets large chunks. While the decoder may be busy with other work
first (a reference encoded a slice at a time), the caller sets ``hold`` and chunks go out
that much sooner. `DoublingSchedule` is the older fixed plan (1, 2, 4, ... frames), right
only for backends well above real time.

Time is passed in (``now``, seconds on any monotonic clock), so schedules are pure
and can be tested on simulated clocks.
"""

from __future__ import annotations

import math
from typing import Final, Literal, Protocol

from app.audio.pcm import frames_to_seconds

ScheduleName = Literal["buffer", "doubling"]
FRAME_SECONDS: Final = frames_to_seconds(1)
_EPSILON: Final = 1e-6
"""Seconds: comparisons of clock times allow for rounding."""
_SMOOTHING: Final = 0.25
"""Weight of the newest observation in the moving averages of arrival and decode time."""


class ChunkSchedule(Protocol):
    def size(self, ready: int, now: float) -> int:
        """Frames to emit now out of ``ready`` decodable ones (0: wait for more)."""
        ...

    def arrived(self, frames: int, now: float) -> None:
        """``frames`` frames exist in all at ``now``."""
        ...

    def emitted(self, frames: int, now: float) -> None:
        """A chunk of ``frames`` frames was planned at ``now``."""
        ...

    def deadline(self, ready: int) -> float | None:
        """When to look again if no frame arrives (frames are held back), or None."""
        ...


class DoublingSchedule:
    """The first chunk ``first_frames``, each next one ``growth`` times the last."""

    def __init__(self, first_frames: int = 1, max_frames: int = 16, growth: float = 2.0) -> None:
        _check(first_frames, max_frames)
        if growth < 1.0:
            raise ValueError("growth must be >= 1")
        self.first_frames = first_frames
        self.max_frames = max_frames
        self.growth = growth
        self.next_size = first_frames

    def size(self, ready: int, now: float) -> int:
        return min(ready, self.max_frames) if ready >= self.next_size else 0

    def arrived(self, frames: int, now: float) -> None:
        pass

    def emitted(self, frames: int, now: float) -> None:
        self.next_size = min(self.max_frames, math.ceil(frames * self.growth))

    def deadline(self, ready: int) -> float | None:
        return None


class Playback:
    """The listener's timeline for one response, shared by the generations (segments) that
    make it up: when its audio started and how much each segment has planned so far.

    A segment's chunk is played after everything planned before it, so the audio the
    listener holds when that chunk would be needed is all audio planned up to and
    including that segment, minus what has played since the first audio.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.frame_seconds = FRAME_SECONDS / speed
        self.started: float | None = None
        self._planned: list[float] = []

    def add_segment(self) -> int:
        self._planned.append(0.0)
        return len(self._planned) - 1

    def planned(self, frames: int, segment: int, at: float) -> None:
        """``frames`` of ``segment`` were planned; ``at``: when their audio would land."""
        if self.started is None:
            self.started = at
        else:
            held = self.audio_through(len(self._planned) - 1) - (at - self.started)
            if held < 0:
                # The listener ran dry and waited (a slow backend, or a session idle between
                # texts): its playback resumes with this chunk, not where it stopped.
                self.started -= held
        self._planned[segment] += frames * self.frame_seconds

    def audio_through(self, segment: int) -> float:
        return sum(self._planned[: segment + 1])

    def buffer(self, now: float, segment: int) -> float:
        """Seconds the listener holds ahead of the segment's next chunk at ``now``."""
        if self.started is None:
            return 0.0
        return self.audio_through(segment) - (now - self.started)


class BufferSchedule:
    """Chunks sized by the audio the listener holds (see the module docstring).

    ``first_frames`` is the start-up buffer: the response's first chunk, and about the
    size of every chunk at exactly real time. ``margin``: seconds of audio the listener
    should still hold when a chunk lands. ``playback``: the response's timeline when
    several segments share it (otherwise one of its own, at ``speed``).
    """

    def __init__(
        self,
        first_frames: int = 2,
        max_frames: int = 16,
        *,
        margin: float = 0.05,
        speed: float = 1.0,
        playback: Playback | None = None,
    ) -> None:
        _check(first_frames, max_frames)
        if margin < 0 or speed <= 0:
            raise ValueError("margin must be >= 0 and speed > 0")
        self.first_frames = first_frames
        self.max_frames = max_frames
        self.margin = margin
        self.playback = playback or Playback(speed)
        self.frame_seconds = self.playback.frame_seconds
        self._segment = self.playback.add_segment()
        self._frames = 0
        self._last_arrival: float | None = None
        self._interval: float | None = None
        """Moving average of the seconds between frame arrivals."""
        self._decode = 0.0
        """Moving average of the seconds from planning a chunk to its audio leaving."""
        self.hold = 0.0
        """Seconds the decoder may be busy with other work (a reference being encoded)
        before it takes the next chunk's window; set by the caller before each plan."""

    def observe_decode(self, seconds: float) -> None:
        """How long the last chunk took from planning to its audio leaving."""
        self._decode += _SMOOTHING * (max(0.0, seconds) - self._decode)

    def arrived(self, frames: int, now: float) -> None:
        if frames <= self._frames:
            return
        if self._last_arrival is not None:
            interval = (now - self._last_arrival) / (frames - self._frames)
            self._interval = (
                interval
                if self._interval is None
                else self._interval + _SMOOTHING * (interval - self._interval)
            )
        self._frames, self._last_arrival = frames, now

    def buffer(self, now: float) -> float:
        """Seconds of audio the listener holds at ``now`` (once the first chunk is out)."""
        return self.playback.buffer(now, self._segment)

    def size(self, ready: int, now: float) -> int:
        if ready <= 0:
            return 0
        if self.playback.started is None:
            return self.first_frames if ready >= self.first_frames else 0
        if ready >= self.max_frames:
            return self.max_frames
        # Waiting for one more frame is safe while, when that frame and then its chunk's
        # audio arrive, the listener still holds the margin; at the deadline it never is.
        wait = self._next_arrival(now) - now
        slack = self.buffer(now) - wait - self._decode - self.hold - self.margin
        if slack > _EPSILON and now < self._last_moment() - _EPSILON:
            return 0
        return ready

    def emitted(self, frames: int, now: float) -> None:
        # The listener starts playing when the first audio reaches it.
        self.playback.planned(frames, self._segment, now + self._decode)

    def deadline(self, ready: int) -> float | None:
        """With frames held back: the moment the buffer falls to margin, decode time and
        hold."""
        if ready <= 0 or self.playback.started is None:
            return None
        return self._last_moment()

    def _last_moment(self) -> float:
        started = self.playback.started if self.playback.started is not None else 0.0
        audio = self.playback.audio_through(self._segment)
        return started + audio - self._decode - self.hold - self.margin

    def _next_arrival(self, now: float) -> float:
        if self._last_arrival is None or self._interval is None:
            return now + self.frame_seconds  # no pace known yet: assume real time
        return max(now, self._last_arrival + self._interval)


def make_schedule(
    name: ScheduleName, first_frames: int, max_frames: int, *, playback: Playback
) -> ChunkSchedule:
    if name == "doubling":
        return DoublingSchedule(first_frames, max_frames)
    return BufferSchedule(first_frames, max_frames, playback=playback)


def _check(first_frames: int, max_frames: int) -> None:
    if first_frames < 1:
        raise ValueError("first_frames must be >= 1")
    if max_frames < first_frames:
        raise ValueError("max_frames must be >= first_frames")
