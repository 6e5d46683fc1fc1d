"""Which requests share a codec call, and where they are padded (pure)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.audio.pcm import SAMPLES_PER_FRAME
from app.codec.grouping import assemble, plan_groups, split
from app.codec.request import DecodeRequest


def request(n: int, keep_start: int, keep_end: int, pad: int = 0, seed: int = 0) -> DecodeRequest:
    codes = np.random.default_rng(seed).integers(0, 4096, size=(n, 7))
    return DecodeRequest(codes, (keep_start, keep_end), pad=pad)


def requests_of(max_frames: int) -> st.SearchStrategy[DecodeRequest]:
    """Any request: ``(frames, keep_start, keep_end)``, a pad and frames."""
    return st.integers(1, max_frames).flatmap(
        lambda n: st.integers(0, n - 1).flatmap(
            lambda ks: st.builds(
                request,
                st.just(n),
                st.just(ks),
                st.integers(ks + 1, n),
                st.sampled_from([0, 480, 2048, 3000]),
                st.integers(0, 99),
            )
        )
    )


@given(
    st.lists(requests_of(24), min_size=1, max_size=16),
    st.integers(0, 4),
    st.sampled_from([0.0, 0.25, 1.0]),
)
def test_groups_pad_only_far_from_the_exact_region(
    requests: list[DecodeRequest], receptive_field: int, max_padding: float
) -> None:
    groups = plan_groups(requests, receptive_field=receptive_field, max_padding=max_padding)
    placed = sorted(slot.index for group in groups for slot in group.slots)
    assert placed == list(range(len(requests)))
    margin = max(receptive_field, 1)
    for group in groups:
        for slot in group.slots:
            r = requests[slot.index]
            first, end = r.exact_region
            assert slot.left + r.length + slot.right == group.length
            assert slot.left == 0 or first >= margin
            assert slot.right == 0 or r.length - end >= margin
            assert slot.left + slot.right <= max_padding * group.length
        # One crop for the whole call: no member computes much more than its own region.
        regions = [
            (requests[s.index].exact_region[0] + s.left, requests[s.index].exact_region[1] + s.left)
            for s in group.slots
        ]
        span = max(end for _, end in regions) - min(first for first, _ in regions)
        assert span <= (1 + max_padding) * min(end - first for first, end in regions)
    firsts = [group.slots[0].index for group in groups]
    assert firsts == sorted(firsts)


@given(st.lists(requests_of(12), min_size=1, max_size=8))
def test_a_batch_holds_each_request_and_splits_back_to_it(requests: list[DecodeRequest]) -> None:
    for group in plan_groups(requests, receptive_field=3, max_padding=1.0):
        batch = assemble(requests, group)
        assert batch.frames.shape == (len(group.slots), group.length, 7)
        for row, slot in zip(batch.frames, group.slots, strict=True):
            r = requests[slot.index]
            assert np.array_equal(row[slot.left : slot.left + r.length], r.frames)
            lo, hi = batch.keep
            assert lo <= slot.left + r.keep[0] and slot.left + r.keep[1] <= hi
            assert r.pad <= batch.pad
        # Each row of a fake output carries its own index: split must hand it back.
        rows = np.repeat(np.arange(len(group.slots), dtype=np.float32)[:, None], 1, 1)
        pcm = np.broadcast_to(rows, (len(group.slots), group.length * SAMPLES_PER_FRAME))
        for k, (slot, out) in enumerate(zip(group.slots, split(pcm, requests, group), strict=True)):
            assert out.shape == (requests[slot.index].length * SAMPLES_PER_FRAME,)
            assert (out == k).all()


def test_stream_edges_are_never_padded() -> None:
    # Longer windows whose kept frames line up with the edge windows' once those are padded.
    first, last, whole, first_partner, last_partner = (
        request(4, 0, 1),
        request(7, 3, 7),
        request(6, 0, 6),
        request(6, 0, 1),
        request(8, 4, 8),
    )
    requests = [first, last, whole, first_partner, last_partner]
    groups = plan_groups(requests, receptive_field=3, max_padding=1.0)
    slots = {slot.index: slot for group in groups for slot in group.slots}
    assert (slots[0].left, slots[0].right) == (0, 2)  # first window: right side only
    assert (slots[1].left, slots[1].right) == (1, 0)  # last window: left side only
    assert (slots[2].left, slots[2].right) == (0, 0)  # touches both edges: exact length
    members = sorted(sorted(slot.index for slot in group.slots) for group in groups)
    assert members == [[0, 3], [1, 4], [2]]


def test_a_last_window_is_not_batched_with_one_frame_windows() -> None:
    # Both are 7 frames long; sharing one crop would make every row decode four frames.
    middles = [request(7, 3, 4, seed=k) for k in range(5)]
    last = request(7, 3, 7)
    groups = plan_groups([*middles, last], receptive_field=3)
    assert [[slot.index for slot in group.slots] for group in groups] == [[0, 1, 2, 3, 4], [5]]
    assert assemble([*middles, last], groups[0]).keep == (3, 4)


def test_pad_widens_the_exact_region() -> None:
    assert request(10, 3, 7).exact_region == (3, 7)
    assert request(10, 3, 7, pad=1).exact_region == (2, 8)
    assert request(10, 3, 7, pad=2 * SAMPLES_PER_FRAME + 1).exact_region == (0, 10)
