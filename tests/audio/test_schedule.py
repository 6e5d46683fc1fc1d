"""The chunk schedule on simulated clocks: smooth at real time, large windows when ahead."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audio.schedule import FRAME_SECONDS, BufferSchedule, DoublingSchedule, Playback
from app.audio.windows import WindowPlanner

T = FRAME_SECONDS


@dataclass
class Run:
    kept: list[int] = field(default_factory=list)
    """Frames per chunk, in order."""
    stall: float = 0.0
    """Seconds a player starting at the first chunk waited with nothing to play."""
    first_audio: float | None = None


def simulate(
    planner: WindowPlanner,
    arrivals: list[float],
    *,
    decode: float = 0.0,
    speed: float = 1.0,
    held: Callable[[float], float] = lambda now: 0.0,
    announced: bool = True,
) -> Run:
    """Frame k exists from ``arrivals[k]``; the planner is called at each arrival and at each
    deadline it sets, as the pipeline does; each chunk reaches the player ``decode`` later,
    plus ``held(now)``: the decoder busy with other work (an encode slice) for that long, as
    the schedule is told (its ``hold``) when ``announced``."""
    run = Run()
    play_end = 0.0
    events = sorted(set(arrivals))
    now, i = 0.0, 0

    def take(windows: list, at: float) -> None:
        nonlocal play_end
        for w in windows:
            landed = at + decode + held(at)
            seconds = w.kept * T / speed
            if run.first_audio is None:
                run.first_audio, play_end = landed, landed + seconds
            else:
                run.stall += max(0.0, landed - play_end)
                play_end = max(play_end, landed) + seconds
            run.kept.append(w.kept)
            if isinstance(planner.schedule, BufferSchedule):
                planner.schedule.observe_decode(decode)

    def announce(now: float) -> None:
        if announced and isinstance(planner.schedule, BufferSchedule):
            planner.schedule.hold = held(now)

    while i < len(events):
        announce(now)
        deadline = planner.deadline()
        if deadline is not None and deadline < events[i]:
            now = max(now, deadline)
        else:
            now = events[i]
            i += 1
        available = sum(1 for a in arrivals if a <= now)
        announce(now)
        take(planner.plan(available, now=now), now)
    take(planner.plan(len(arrivals), final=True, now=now), now)
    return run


def buffered(first: int = 2, max_frames: int = 16, **kwargs: float) -> WindowPlanner:
    return WindowPlanner(
        context=3, max_frames=max_frames, schedule=BufferSchedule(first, max_frames, **kwargs)
    )


def paced(frames: int, rate: float = 1.0, start: float = 0.3) -> list[float]:
    """Frame k at ``start + k * T / rate``: ``rate`` times real time."""
    return [start + k * T / rate for k in range(frames)]


def test_real_time_arrivals_never_stall_after_the_start_up_buffer() -> None:
    run = simulate(buffered(first=2), paced(120))
    assert run.stall == pytest.approx(0.0, abs=1e-9)
    assert sum(run.kept) == 120
    # The first audio waits for the start-up buffer plus the look-ahead (5 frames).
    assert run.first_audio == pytest.approx(0.3 + 4 * T)
    # At exactly real time every chunk stays small: there is never audio to spare.
    assert max(run.kept[:-2]) <= 2


def test_the_doubling_schedule_stalls_at_real_time() -> None:
    planner = WindowPlanner(context=3, max_frames=16, schedule=DoublingSchedule(1, 16))
    run = simulate(planner, paced(60))
    assert run.stall > 1.0  # the behaviour the buffer schedule replaces


def test_a_fast_backend_gets_large_windows() -> None:
    run = simulate(buffered(first=2), paced(240, rate=2.4))
    assert run.stall == pytest.approx(0.0, abs=1e-9)
    assert run.kept[0] == 2
    assert max(run.kept) == 16 and sum(k == 16 for k in run.kept) >= 8
    # Windows grow with the buffer: sizes never shrink while the backend stays ahead.
    growing = run.kept[: run.kept.index(16)]
    assert growing == sorted(growing)


def test_decode_time_and_tempo_are_allowed_for() -> None:
    # 30 ms to decode each chunk, played at 1.5x: frames are needed sooner, still no stall
    # once the start-up buffer covers the decode time.
    run = simulate(buffered(first=2, speed=1.5), paced(90, rate=1.6), decode=0.03, speed=1.5)
    assert run.stall == pytest.approx(0.0, abs=1e-9)


def test_a_backend_pause_is_covered_by_held_frames_until_the_deadline() -> None:
    # Fast, then nothing for 0.5 s: frames held back for a larger window must go out by
    # the deadline, not wait for the next arrival.
    arrivals = paced(40, rate=3.0) + [p + 0.5 for p in paced(40, rate=3.0, start=1.5)]
    run = simulate(buffered(first=2), arrivals)
    assert run.stall == pytest.approx(0.0, abs=1e-9)


def test_a_decoder_held_by_encode_slices_is_allowed_for() -> None:
    # From 2 s to 4 s a reference is encoded: each chunk may wait 200 ms behind a slice
    # (the worker takes windows only between slices). The schedule's 50 ms margin alone runs
    # the listener dry; told of the hold, it sends chunks that much sooner. (At exactly real
    # time no schedule can: the listener never holds more than the margin.)
    def slicing(now: float) -> float:
        return 0.2 if 2.0 <= now <= 4.0 else 0.0

    arrivals = paced(120, rate=1.16)  # the headroom of tests/api/test_cloning_under_load.py
    assert simulate(buffered(first=2), arrivals, held=slicing, announced=False).stall > 0.1
    told = simulate(buffered(first=2), arrivals, held=slicing)
    assert told.stall == pytest.approx(0.0, abs=1e-9)
    assert sum(told.kept) == 120


@st.composite
def keeping_pace(draw: st.DrawFn) -> list[float]:
    """Arrivals in random bursts that never fall behind playback once audio started:
    frame k exists by ``t0 + (k - 4) * T`` (t0: when frame 4, the first audio's last
    look-ahead, arrived), and bursts may run ahead of that by any amount."""
    frames = draw(st.integers(6, 90))
    t0 = draw(st.floats(0.0, 1.0))
    early = draw(st.lists(st.floats(0.0, 1.0), min_size=frames, max_size=frames))
    arrivals = [t0 * (k + 1) / 5 for k in range(5)]
    for k in range(5, frames):
        latest = t0 + (k - 4) * T
        arrivals.append(max(arrivals[-1], latest - early[k] * (latest - arrivals[-1])))
    return arrivals


@settings(max_examples=200, deadline=None)
@given(keeping_pace(), st.integers(2, 4), st.sampled_from([4, 8, 16]))
def test_no_stall_whenever_arrivals_keep_pace(
    arrivals: list[float], first: int, max_frames: int
) -> None:
    planner = buffered(first=min(first, max_frames), max_frames=max_frames)
    run = simulate(planner, arrivals)
    assert run.stall == pytest.approx(0.0, abs=1e-9)
    assert sum(run.kept) == len(arrivals) and max(run.kept) <= max_frames


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.0, 0.5), min_size=1, max_size=80),
    st.integers(1, 4),
    st.integers(1, 16),
)
def test_every_frame_once_whatever_the_arrivals(gaps: list[float], first: int, extra: int) -> None:
    arrivals = [sum(gaps[: k + 1]) for k in range(len(gaps))]
    run = simulate(buffered(first=first, max_frames=first + extra), arrivals)
    assert sum(run.kept) == len(arrivals)
    assert all(1 <= k <= first + extra for k in run.kept)


def test_bad_settings() -> None:
    for first, max_frames in ((0, 4), (5, 4)):
        with pytest.raises(ValueError):
            BufferSchedule(first, max_frames)
    with pytest.raises(ValueError):
        BufferSchedule(2, 4, speed=0.0)
    assert math.isclose(BufferSchedule(2, 4, speed=2.0).frame_seconds, T / 2)


def test_a_listener_that_ran_dry_resumes_with_the_next_chunk() -> None:
    playback = Playback()
    segment = playback.add_segment()
    playback.planned(2, segment, at=0.0)
    assert playback.buffer(0.1, segment) == pytest.approx(2 * T - 0.1)
    # Ten seconds of silence later (a session idle between texts) the listener holds what
    # was just sent, not minus ten seconds: later chunks may grow again.
    later = playback.add_segment()
    playback.planned(1, later, at=10.0)
    assert playback.buffer(10.0, later) == pytest.approx(T)
    planner = WindowPlanner(
        context=3, max_frames=16, schedule=BufferSchedule(2, 16, playback=playback)
    )
    assert planner.schedule.buffer(10.0) == pytest.approx(T)
