from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import vocab as tk
from app.codec.tokens import FrameAssembler, codes_to_frames, frames_to_codes, frames_to_token_ids
from app.errors import InvalidAudioTokens
from app.vocab import (
    AUDIO_TOKEN_BASE,
    AUDIO_TOKEN_END,
    CODEBOOK_SIZE,
    TOKENS_PER_FRAME,
    audio_token_id,
    token_slot_code,
)

codes = st.integers(0, CODEBOOK_SIZE - 1)
frame_lists = st.lists(st.lists(codes, min_size=7, max_size=7), max_size=12)
non_audio_ids = st.one_of(
    st.just(-1),
    st.integers(0, AUDIO_TOKEN_BASE - 1),
    st.sampled_from([tk.BOS, tk.EOT, tk.START_OF_SPEECH, tk.END_OF_SPEECH, AUDIO_TOKEN_BASE - 1]),
)


def as_frames(rows: list[list[int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).reshape(-1, TOKENS_PER_FRAME)


def split(seq: list[int], cuts: list[int]) -> list[list[int]]:
    bounds = sorted({min(c, len(seq)) for c in cuts} | {0, len(seq)})
    return [seq[a:b] for a, b in itertools.pairwise(bounds)]


def feed_all(asm: FrameAssembler, chunks: list[list[int]]) -> np.ndarray:
    out = [asm.feed(chunk) for chunk in chunks]
    return np.concatenate([np.empty((0, 7), np.int64), *out])


def test_frames_to_codes_follows_snac_time_order() -> None:
    frame = [[10, 11, 12, 13, 14, 15, 16], [20, 21, 22, 23, 24, 25, 26]]
    c0, c1, c2 = frames_to_codes(frame)
    assert c0.tolist() == [10, 20]
    assert c1.tolist() == [11, 14, 21, 24]
    assert c2.tolist() == [12, 13, 15, 16, 22, 23, 25, 26]


@given(frame_lists)
def test_codes_round_trip(rows: list[list[int]]) -> None:
    frames = as_frames(rows)
    c0, c1, c2 = frames_to_codes(frames)
    assert (c0.shape, c1.shape, c2.shape) == ((len(rows),), (2 * len(rows),), (4 * len(rows),))
    np.testing.assert_array_equal(codes_to_frames(c0, c1, c2), frames)


@given(st.lists(frame_lists.filter(lambda r: len(r) == 3), min_size=1, max_size=3))
def test_codes_round_trip_with_batch_dimension(batch: list[list[list[int]]]) -> None:
    frames = np.asarray(batch, dtype=np.int64)
    c0, c1, c2 = frames_to_codes(frames)
    assert c1.shape == (len(batch), 6)
    for b in range(len(batch)):
        single = frames_to_codes(frames[b])
        for got, want in zip((c0, c1, c2), single, strict=True):
            np.testing.assert_array_equal(got[b], want)
    np.testing.assert_array_equal(codes_to_frames(c0, c1, c2), frames)


def test_frames_validation() -> None:
    with pytest.raises(ValueError):
        frames_to_codes(np.zeros((2, 6), dtype=np.int64))
    with pytest.raises(ValueError):
        frames_to_codes(np.full((1, 7), 4096))
    with pytest.raises(ValueError):
        codes_to_frames([1], [1, 2], [1, 2, 3])


@given(rows=frame_lists, cuts=st.lists(st.integers(0, 100)), noise=st.data())
def test_assembler_recovers_any_valid_stream_split_anywhere(
    rows: list[list[int]], cuts: list[int], noise: st.DataObject
) -> None:
    frames = as_frames(rows)
    ids: list[int] = frames_to_token_ids(frames)
    # Interleave text / control ids anywhere: they must not break a frame.
    extra = noise.draw(st.lists(st.tuples(st.integers(0, len(ids)), non_audio_ids), max_size=8))
    for pos, token in sorted(extra, reverse=True):
        ids.insert(pos, token)
    asm = FrameAssembler()
    np.testing.assert_array_equal(feed_all(asm, split(ids, cuts)), frames)
    assert asm.non_audio == len(extra)
    assert (asm.invalid, asm.dropped_frames, asm.skipped, asm.pending) == (0, 0, 0, 0)
    assert asm.frames_emitted == len(rows)


@given(rows=frame_lists, tail=st.integers(1, 6))
def test_trailing_partial_frame_never_becomes_audio(rows: list[list[int]], tail: int) -> None:
    ids = frames_to_token_ids(as_frames(rows)) + frames_to_token_ids([[1] * 7])[:tail]
    asm = FrameAssembler()
    assert len(asm.feed(ids)) == len(rows)
    assert asm.pending == tail


@given(
    rows=frame_lists.filter(bool),
    data=st.data(),
)
def test_out_of_range_ids_drop_exactly_the_frames_they_hit(
    rows: list[list[int]], data: st.DataObject
) -> None:
    frames = as_frames(rows)
    n_ids = 7 * len(rows)
    # Position p means "before the p-th audio id"; p % 7 != 0 lands inside a frame.
    positions = data.draw(st.lists(st.integers(0, n_ids), min_size=1, max_size=6))
    garbage = data.draw(
        st.lists(
            st.integers(AUDIO_TOKEN_END, AUDIO_TOKEN_END + 50_000),
            min_size=len(positions),
            max_size=len(positions),
        )
    )
    ids = frames_to_token_ids(frames)
    for pos, token in sorted(zip(positions, garbage, strict=True), reverse=True):
        ids.insert(pos, token)
    hit = {p // 7 for p in positions if p % 7}
    asm = FrameAssembler()
    out = asm.feed(ids)
    np.testing.assert_array_equal(out, frames[[i for i in range(len(rows)) if i not in hit]])
    assert asm.invalid == len(positions)
    assert asm.dropped_frames == len(hit)


@given(rows=frame_lists.filter(lambda r: len(r) >= 2), data=st.data())
def test_misplaced_audio_ids_never_smear_across_frames(
    rows: list[list[int]], data: st.DataObject
) -> None:
    frames = as_frames(rows)
    ids = frames_to_token_ids(frames)
    n_garbage = data.draw(st.integers(1, 5))
    inserts = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(ids) - 7), st.integers(0, 6), codes),
            min_size=n_garbage,
            max_size=n_garbage,
        )
    )
    last_garbage_pos = 0
    for pos, slot, code in sorted(inserts, reverse=True):
        ids.insert(pos, audio_token_id(slot, code))
    for pos, _, _ in inserts:
        last_garbage_pos = max(last_garbage_pos, pos)
    cuts = data.draw(st.lists(st.integers(0, len(ids))))

    asm = FrameAssembler()
    out = feed_all(asm, split(ids, cuts))
    # Deterministic: the same stream in one piece gives the same frames and counters.
    again = FrameAssembler()
    np.testing.assert_array_equal(again.feed(ids), out)
    assert (again.invalid, again.dropped_frames, again.skipped) == (
        asm.invalid,
        asm.dropped_frames,
        asm.skipped,
    )
    # Every frame is 7 consecutive audio ids of the stream with slots 0..6.
    pairs = (
        [(t - AUDIO_TOKEN_BASE) // CODEBOOK_SIZE for t in ids],
        [(t - AUDIO_TOKEN_BASE) % CODEBOOK_SIZE for t in ids],
    )
    slots, values = pairs
    runs = {
        tuple(values[i : i + 7]) for i in range(len(ids) - 6) if slots[i : i + 7] == list(range(7))
    }
    assert all(tuple(row) in runs for row in out.tolist())
    # An extra audio id always breaks the slot sequence somewhere.
    assert asm.invalid >= 1
    # Resync: every original frame that starts after the last garbage id comes out.
    first_clean = -(-last_garbage_pos // 7)
    tail = frames[first_clean:]
    np.testing.assert_array_equal(out[len(out) - len(tail) :], tail)


def test_resync_on_the_invalid_token_itself_when_it_is_slot_zero() -> None:
    first, second = [[5, 6, 7, 8, 9, 10, 11]], [[1, 2, 3, 4, 5, 6, 7]]
    ids = frames_to_token_ids(first)[:3] + frames_to_token_ids(second)
    asm = FrameAssembler()
    np.testing.assert_array_equal(asm.feed(ids), as_frames(second))
    assert (asm.invalid, asm.dropped_frames, asm.skipped) == (1, 1, 0)


def test_resync_skips_until_slot_zero() -> None:
    good = [[5, 6, 7, 8, 9, 10, 11]]
    ids = frames_to_token_ids(good)[:2]  # c0, c1a
    ids += [audio_token_id(4, 1), audio_token_id(5, 1), audio_token_id(2, 3)]  # wrong slots
    ids += frames_to_token_ids(good)
    asm = FrameAssembler()
    np.testing.assert_array_equal(asm.feed(ids), as_frames(good))
    assert (asm.invalid, asm.dropped_frames, asm.skipped) == (1, 1, 2)


def test_fail_policy_raises_on_first_invalid_token() -> None:
    asm = FrameAssembler(policy="fail")
    ids = frames_to_token_ids([[0] * 7])
    assert len(asm.feed([tk.START_OF_SPEECH, *ids, -1])) == 1
    with pytest.raises(InvalidAudioTokens):
        asm.feed([audio_token_id(3, 0)])
    with pytest.raises(InvalidAudioTokens):
        FrameAssembler(policy="fail").feed([AUDIO_TOKEN_END])


def test_max_invalid_is_a_limit() -> None:
    asm = FrameAssembler(max_invalid=2)
    asm.feed([AUDIO_TOKEN_END, AUDIO_TOKEN_END])
    assert asm.invalid == 2
    with pytest.raises(InvalidAudioTokens, match="limit of 2"):
        asm.feed([AUDIO_TOKEN_END])


@settings(max_examples=50)
@given(frame_lists)
def test_frames_to_token_ids_spells_each_slot(rows: list[list[int]]) -> None:
    ids = frames_to_token_ids(as_frames(rows))
    assert len(ids) == 7 * len(rows)
    assert [token_slot_code(t) for t in ids] == [
        (slot, code) for row in rows for slot, code in enumerate(row)
    ]
