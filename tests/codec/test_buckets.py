"""Buckets of the accelerated decoders and the placement of a batch into one (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.buckets import (
    BucketPlan,
    Placement,
    Shape,
    batch_sizes,
    fit,
    restore,
    window_lengths,
)
from app.codec.grouping import paddable_sides

F = SAMPLES_PER_FRAME
SCICOM_SECONDS = [0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0]


def test_window_buckets_in_seconds_become_frames_that_hold_that_much_audio() -> None:
    assert window_lengths(SCICOM_SECONDS) == (2, 3, 6, 12, 18, 24, 36)
    assert window_lengths([F / 24000, 2 * F / 24000]) == (1, 2)  # exact frames stay exact
    assert window_lengths([0.01, 0.05]) == (1,)
    for seconds, frames in zip(SCICOM_SECONDS, window_lengths(SCICOM_SECONDS), strict=True):
        assert (frames - 1) * F < seconds * 24000 <= frames * F


def test_batch_buckets_are_powers_of_two_up_to_the_largest_batch() -> None:
    assert batch_sizes(1) == (1,)
    assert batch_sizes(16) == (1, 2, 4, 8, 16)
    assert batch_sizes(12) == (1, 2, 4, 8, 12)
    with pytest.raises(ValueError):
        batch_sizes(0)


def test_each_length_has_an_interior_and_a_whole_crop() -> None:
    plan = BucketPlan([1, 4], [5, 8], context=3, pad=480, receptive_field=3)
    assert plan.crops(8) == [Shape(1, 8, (3, 5), 480), Shape(1, 8, (0, 8), 0)]
    assert plan.crops(5) == [Shape(1, 5, (0, 5), 0)]  # no frame is more than 3 from an edge
    shapes = plan.shapes()
    assert len(shapes) == 2 * 3
    works = [s.work for s in shapes]
    assert works == sorted(works, reverse=True)  # captured largest first
    assert shapes[0] == Shape(4, 8, (0, 8), 0)


def test_a_stream_edge_is_never_padded() -> None:
    plan = BucketPlan([1, 2], [8, 12], context=3, pad=0, receptive_field=3)
    first = plan.place(1, 5, (0, 2))  # the first chunk: no context on the left
    assert first == Placement(Shape(1, 8, (0, 8), 0), 1, 5, left=0)
    last = plan.place(1, 6, (3, 6))  # the final flush: none on the right
    assert last == Placement(Shape(1, 8, (0, 8), 0), 1, 6, left=2)
    assert plan.place(2, 4, (0, 4)) is None  # a whole short stream: no side may be padded
    middle = plan.place(2, 7, (3, 4))
    assert middle == Placement(Shape(2, 8, (3, 5), 0), 2, 7, left=0)


def test_with_a_crossfade_reaching_into_the_context_only_exact_lengths_fit() -> None:
    plan = BucketPlan([1], [8, 9], context=3, pad=480, receptive_field=3)
    assert plan.place(1, 8, (3, 5), 480) == Placement(Shape(1, 8, (3, 5), 480), 1, 8, 0)
    assert plan.place(1, 7, (3, 4), 480) is None  # the pad samples are 2 frames from the edge
    assert plan.place(1, 8, (3, 5), 481) == Placement(Shape(1, 8, (0, 8), 0), 1, 8, 0)
    assert plan.place(2, 8, (3, 5), 480) is None  # no bucket holds two rows
    assert plan.place(1, 10, (3, 7), 480) is None  # longer than every bucket


def reference_fits(
    plan: BucketPlan, rows: int, n: int, keep: tuple[int, int], pad: int
) -> list[int]:
    """Bucket lengths where some crop and some allowed left padding hold the batch
    (brute force over every padding)."""
    if not any(b >= rows for b in plan.batches):
        return []
    left_ok, right_ok = paddable_sides(n, keep, pad, receptive_field=plan.receptive_field)
    need = Shape(1, n, keep, pad).computed
    fits = []
    for size in (s for s in plan.lengths if s >= n):
        for left in range(size - n + 1):
            right = size - n - left
            if (left and not left_ok) or (right and not right_ok):
                continue
            for crop in plan.crops(size):
                have = crop.computed
                if have[0] <= need[0] + left * F and need[1] + left * F <= have[1]:
                    fits.append(size)
    return sorted(set(fits))


@st.composite
def batches(draw: st.DrawFn) -> tuple[BucketPlan, int, int, tuple[int, int], int]:
    lengths = draw(st.lists(st.integers(1, 30), min_size=1, max_size=6))
    plan = BucketPlan(
        draw(st.lists(st.integers(1, 16), min_size=1, max_size=4)),
        lengths,
        context=draw(st.integers(0, 4)),
        pad=draw(st.sampled_from([0, 480, 2048])),
        receptive_field=draw(st.integers(0, 4)),
    )
    n = draw(st.integers(1, 30))
    lo = draw(st.integers(0, n - 1))
    keep = (lo, draw(st.integers(lo + 1, n)))
    return plan, draw(st.integers(1, 16)), n, keep, draw(st.sampled_from([0, 100, 480, 3000]))


@given(batches())
def test_placement_is_the_shortest_bucket_that_holds_the_batch_exactly(
    case: tuple[BucketPlan, int, int, tuple[int, int], int],
) -> None:
    plan, rows, n, keep, pad = case
    placement = plan.place(rows, n, keep, pad)
    fits = reference_fits(plan, rows, n, keep, pad)
    if placement is None:
        assert fits == []
        return
    shape = placement.shape
    assert shape.length == fits[0]
    assert shape.batch == min(b for b in plan.batches if b >= rows)
    assert (placement.rows, placement.length) == (rows, n)
    left_ok, right_ok = paddable_sides(n, keep, pad, receptive_field=plan.receptive_field)
    right = shape.length - n - placement.left
    assert placement.left == 0 or left_ok
    assert right == 0 or right_ok
    need = Shape(1, n, keep, pad).computed
    have = shape.computed
    assert have[0] <= need[0] + placement.left * F and need[1] + placement.left * F <= have[1]
    assert plan.place(rows, n, keep, pad) == placement  # cached, same answer


@given(
    st.integers(1, 4), st.integers(1, 8), st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)
)
def test_fit_pads_with_copies_of_the_edge_frames_and_restore_takes_them_off(
    rows: int, n: int, left: int, right: int, extra_rows: int
) -> None:
    frames = np.random.default_rng(n).integers(1, 4096, size=(rows, n, 7))
    shape = Shape(rows + extra_rows, n + left + right, (0, n + left + right), 0)
    placement = Placement(shape, rows, n, left)
    padded = fit(frames, placement)
    assert padded.shape == (rows + extra_rows, n + left + right, 7)
    assert np.array_equal(padded[:rows, left : left + n], frames)
    assert (padded != 0).all()  # never code 0 next to a window: the edge frame repeated
    assert (padded[:rows, :left] == frames[:, :1]).all()
    assert (padded[:rows, left + n :] == frames[:, -1:]).all()
    # An output that numbers its samples comes back as the batch's own, zeroed outside keep.
    pcm = np.arange(shape.batch * shape.length * F, dtype=np.float32).reshape(shape.batch, -1)
    keep = (0, n) if n == 1 else (1, n)
    out = restore(pcm, placement, keep, 100)
    assert out.shape == (rows, n * F)
    lo = max(0, keep[0] * F - 100)
    assert np.array_equal(out[:, lo:], pcm[:rows, left * F + lo : (left + n) * F])
    assert not out[:, :lo].any()
