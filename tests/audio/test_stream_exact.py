"""Streaming decode == one offline decode: tokens -> frames -> windows -> tiny SNAC -> joins."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.audio.joins import SeamJoiner
from app.audio.pcm import SAMPLES_PER_FRAME as SPF
from app.audio.windows import Window, WindowPlanner
from app.codec.snac import SnacCodec
from app.codec.tokens import FrameAssembler, frames_to_token_ids
from app.vocab import START_OF_SPEECH


def stream(
    codec: SnacCodec,
    token_ids: list[int],
    cuts: list[int],
    planner: WindowPlanner,
    crossfade: int,
    crop: bool = False,
) -> tuple[np.ndarray, list[tuple[Window, np.ndarray]]]:
    """Feed tokens in the given pieces as a streaming session would; return the PCM sent
    and every (window, decode) pair. ``crop`` decodes only what the joiner uses."""
    assembler = FrameAssembler()
    joiner = SeamJoiner(crossfade)
    frames = np.empty((0, 7), np.int64)
    sent: list[np.ndarray] = []
    decodes: list[tuple[Window, np.ndarray]] = []

    def run(windows: list[Window]) -> None:
        for w in windows:
            keep = (w.left_context, w.left_context + w.kept) if crop else None
            pcm = codec.decode(frames[w.start : w.end], keep=keep, pad=crossfade)
            decodes.append((w, pcm))
            sent.append(joiner.push(w, pcm))

    bounds = sorted({min(c, len(token_ids)) for c in cuts} | {0, len(token_ids)})
    for a, b in itertools.pairwise(bounds):
        frames = np.concatenate([frames, assembler.feed(token_ids[a:b])])
        run(planner.plan(len(frames)))
    run(planner.plan(len(frames), final=True))
    sent.append(joiner.finish())
    return np.concatenate([np.zeros(0, np.float32), *sent]), decodes


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_frames=st.integers(1, 40),
    first=st.integers(1, 2),
    max_frames=st.integers(1, 16),
    crop=st.booleans(),
    data=st.data(),
)
def test_windowed_stream_equals_offline_decode(
    tiny_codec: SnacCodec,
    n_frames: int,
    first: int,
    max_frames: int,
    crop: bool,
    data: st.DataObject,
) -> None:
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    frames = np.random.default_rng(seed).integers(0, 4096, (n_frames, 7))
    token_ids = [START_OF_SPEECH, *frames_to_token_ids(frames)]
    cuts = data.draw(st.lists(st.integers(0, len(token_ids)), max_size=40), label="cuts")
    planner = WindowPlanner(context=3, first_frames=first, max_frames=max(first, max_frames))

    out, _ = stream(tiny_codec, token_ids, cuts, planner, crossfade=0, crop=crop)

    offline = tiny_codec.decode(frames)
    assert out.shape == offline.shape == (n_frames * SPF,)
    assert float(np.abs(out - offline).max()) <= 1e-4


def test_too_little_context_is_measurably_not_exact(tiny_codec: SnacCodec) -> None:
    frames = np.random.default_rng(5).integers(0, 4096, (24, 7))
    token_ids = frames_to_token_ids(frames)
    offline = tiny_codec.decode(frames)
    errors = {}
    for context in (1, 3):
        planner = WindowPlanner(context=context, first_frames=1, max_frames=4)
        out, _ = stream(tiny_codec, token_ids, list(range(0, len(token_ids), 7)), planner, 0)
        assert out.shape == offline.shape
        errors[context] = float(np.abs(out - offline).max())
    assert errors[3] <= 1e-4
    assert errors[1] > 100 * 1e-4, errors


@pytest.mark.parametrize("crop", [False, True])
def test_noisy_codec_crossfades_seams_and_keeps_length(
    tiny_noisy_codec: SnacCodec, crop: bool
) -> None:
    crossfade = 480  # 20 ms, the default CROSSFADE_MS
    frames = np.random.default_rng(9).integers(0, 4096, (30, 7))
    token_ids = frames_to_token_ids(frames)
    planner = WindowPlanner(context=3, first_frames=1, max_frames=8)
    cuts = list(range(0, len(token_ids), 7))
    out, decodes = stream(tiny_noisy_codec, token_ids, cuts, planner, crossfade, crop)
    assert out.shape == (30 * SPF,)

    # In stream coordinates, each window's decode covers [start, end) frames.
    def realisation(i: int) -> tuple[int, np.ndarray]:
        w, pcm = decodes[i]
        return w.start * SPF, pcm

    covered = np.zeros(out.shape, bool)
    for i in range(len(decodes) - 1):
        seam = decodes[i][0].keep_end * SPF
        (a0, a), (b0, b) = realisation(i), realisation(i + 1)
        lo, hi = seam - crossfade, seam + crossfade
        old, new = a[lo - a0 : hi - a0], b[lo - b0 : hi - b0]
        assert np.abs(new - old).max() > 1e-3, "noise on: the two decodes must disagree"
        # The stream moves from one realisation to the other gradually: the share of the
        # new one rises monotonically from ~0 to ~1 across 2X samples centred on the seam.
        share = (out[lo:hi] - old) / np.where(np.abs(new - old) > 1e-3, new - old, np.nan)
        share = share[~np.isnan(share)]
        assert np.all((share > -1e-3) & (share < 1 + 1e-3))
        assert np.all(np.diff(share) > -1e-3)
        assert share[0] < 0.01 and share[-1] > 0.99
        covered[lo:hi] = True
    # Away from the seams every sample is exactly one window's kept decode.
    for w, pcm in decodes:
        span = slice(w.keep_start * SPF, w.keep_end * SPF)
        kept = pcm[w.left_context * SPF : (w.left_context + w.kept) * SPF]
        mask = ~covered[span]
        np.testing.assert_array_equal(out[span][mask], kept[mask])
