from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.audio.windows import Window, WindowPlanner


@dataclass
class Planned:
    window: Window
    available: int  # frames that existed when it was planned
    final: bool
    call: int  # index of the plan() call that produced it


def run_schedule(planner: WindowPlanner, batches: list[int]) -> list[Planned]:
    out: list[Planned] = []
    available = 0
    for call, batch in enumerate(batches):
        available += batch
        out += [Planned(w, available, False, call) for w in planner.plan(available)]
    out += [Planned(w, available, True, len(batches)) for w in planner.plan(available, final=True)]
    return out


planners = st.builds(
    lambda context, first, extra, growth: WindowPlanner(context, first, first + extra, growth),
    context=st.integers(0, 4),
    first=st.integers(1, 4),
    extra=st.integers(0, 16),
    growth=st.floats(1.0, 3.0),
)
arrivals = st.lists(st.integers(0, 9), max_size=30)


@given(planner=planners, batches=arrivals)
def test_every_frame_is_emitted_exactly_once_in_order(
    planner: WindowPlanner, batches: list[int]
) -> None:
    planned = run_schedule(planner, batches)
    kept = [f for p in planned for f in range(p.window.keep_start, p.window.keep_end)]
    assert kept == list(range(sum(batches)))
    assert planner.emitted == sum(batches)
    assert planner.finished


@given(planner=planners, batches=arrivals)
def test_contexts_and_sizes(planner: WindowPlanner, batches: list[int]) -> None:
    ctx = planner.context
    for p in run_schedule(planner, batches):
        w = p.window
        assert w.end <= p.available, "a window may only use frames that exist"
        assert w.left_context == min(ctx, w.keep_start)
        # Full look-ahead, except where the stream truly ends (final flush).
        if p.final:
            assert w.right_context == min(ctx, p.available - w.keep_end)
        else:
            assert w.right_context == ctx
        assert 1 <= w.kept <= planner.max_frames


@given(planner=planners, batches=arrivals)
def test_first_window_leaves_as_soon_as_first_frames_plus_context_exist(
    planner: WindowPlanner, batches: list[int]
) -> None:
    planned = run_schedule(planner, batches)
    needed = planner.first_frames + planner.context
    totals = [sum(batches[: i + 1]) for i in range(len(batches))]
    ready = next((i for i, total in enumerate(totals) if total >= needed), None)
    if ready is None:
        # Not enough frames ever: everything comes out at the final flush.
        assert all(p.final for p in planned)
        return
    first = planned[0]
    assert first.call == ready
    assert first.window.keep_start == 0
    assert first.window.kept >= planner.first_frames


@given(planner=planners, batches=arrivals)
def test_chunks_grow_on_schedule(planner: WindowPlanner, batches: list[int]) -> None:
    scheduled = planner.first_frames
    for p in run_schedule(planner, batches):
        if p.final:
            break
        assert p.window.kept >= scheduled
        scheduled = min(planner.max_frames, math.ceil(p.window.kept * planner.growth))


def test_default_schedule_one_frame_at_a_time() -> None:
    planner = WindowPlanner()
    first_ready = None
    keeps = []
    for available in range(1, 60):
        windows = planner.plan(available)
        if windows and first_ready is None:
            first_ready = available
        keeps += [w.kept for w in windows]
    assert first_ready == 1 + 3
    assert keeps[:6] == [1, 2, 4, 8, 16, 16]
    assert planner.emitted == 1 + 2 + 4 + 8 + 16 + 16  # the next 16 need frames up to 66
    final = planner.plan(59, final=True)
    assert [(w.start, w.keep_start, w.keep_end, w.end) for w in final] == [(44, 47, 59, 59)]


def test_a_burst_is_emitted_in_max_size_windows() -> None:
    planner = WindowPlanner(context=3, first_frames=1, max_frames=16)
    windows = planner.plan(50)
    assert [w.kept for w in windows] == [16, 16]  # then 16 more + 3 look-ahead are needed
    assert planner.plan(50) == []
    assert [w.kept for w in planner.plan(51)] == [16]
    assert [w.kept for w in planner.plan(51, final=True)] == [3]


def test_final_flush_splits_into_max_windows_with_lookahead_where_it_exists() -> None:
    planner = WindowPlanner(context=3, first_frames=4, max_frames=4)
    windows = planner.plan(10, final=True)
    assert [(w.start, w.keep_start, w.keep_end, w.end) for w in windows] == [
        (0, 0, 4, 7),
        (1, 4, 8, 10),
        (5, 8, 10, 10),
    ]


def test_context_zero_windows_do_not_overlap() -> None:
    planner = WindowPlanner(context=0, first_frames=1, max_frames=4)
    windows = [w for n in range(1, 12) for w in planner.plan(n)] + planner.plan(11, final=True)
    assert all(w.start == w.keep_start and w.end == w.keep_end for w in windows)
    assert sum(w.kept for w in windows) == 11


def test_empty_stream_and_misuse() -> None:
    planner = WindowPlanner()
    assert planner.plan(0) == []
    assert planner.plan(0, final=True) == []
    assert planner.plan(0) == []
    with pytest.raises(ValueError):
        planner.plan(1)
    planner = WindowPlanner()
    planner.plan(5)
    with pytest.raises(ValueError):
        planner.plan(4)
    for kwargs in ({"context": -1}, {"first_frames": 0}, {"max_frames": 0}, {"growth": 0.5}):
        with pytest.raises(ValueError):
            WindowPlanner(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Window(start=2, end=5, keep_start=1, keep_end=4)
