"""SeamJoiner on synthetic window decodes (the codec-level checks are in test_stream_exact)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audio.joins import SeamJoiner
from app.audio.pcm import SAMPLES_PER_FRAME as SPF
from app.audio.windows import Window, WindowPlanner

planners = st.builds(
    lambda context, first, extra: WindowPlanner(context, first, first + extra),
    context=st.integers(0, 4),
    first=st.integers(1, 3),
    extra=st.integers(0, 8),
)
arrivals = st.lists(st.integers(0, 6), max_size=12)


def plan_all(planner: WindowPlanner, batches: list[int]) -> list[Window]:
    windows: list[Window] = []
    total = 0
    for batch in batches:
        total += batch
        windows += planner.plan(total)
    return windows + planner.plan(total, final=True)


def join(windows: list[Window], decode: object, crossfade: int) -> np.ndarray:
    joiner = SeamJoiner(crossfade)
    parts = [joiner.push(w, decode(w)) for w in windows]  # type: ignore[operator]
    parts.append(joiner.finish())
    return np.concatenate([np.zeros(0, np.float32), *parts])


def smooth_signal(frames: int, seed: int = 0) -> np.ndarray:
    t = np.arange(frames * SPF) / 24_000
    rng = np.random.default_rng(seed)
    freqs, phases = rng.uniform(80, 400, 3), rng.uniform(0, 2 * np.pi, 3)
    return (0.2 * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).sum(0)).astype(
        np.float32
    )


@settings(max_examples=60)
@given(planner=planners, batches=arrivals, seed=st.integers(0, 2**16))
def test_no_crossfade_returns_exactly_the_kept_samples(
    planner: WindowPlanner, batches: list[int], seed: int
) -> None:
    windows = plan_all(planner, batches)
    rng = np.random.default_rng(seed)
    # Every window decodes to different samples; only the kept ones may come out.
    decodes = {w: rng.standard_normal(w.frames * SPF).astype(np.float32) for w in windows}
    out = join(windows, decodes.__getitem__, 0)
    want = [decodes[w][w.left_context * SPF : (w.left_context + w.kept) * SPF] for w in windows]
    np.testing.assert_array_equal(out, np.concatenate([np.zeros(0, np.float32), *want]))


@settings(max_examples=60)
@given(planner=planners, batches=arrivals, crossfade=st.integers(0, 5000))
def test_crossfade_keeps_length_and_leaves_agreeing_decodes_untouched(
    planner: WindowPlanner, batches: list[int], crossfade: int
) -> None:
    total = sum(batches)
    windows = plan_all(planner, batches)
    signal = smooth_signal(total)
    out = join(windows, lambda w: signal[w.start * SPF : w.end * SPF], crossfade)
    assert out.shape == (total * SPF,)
    # Blending two identical decodes is the identity: crossfading never distorts.
    np.testing.assert_allclose(out, signal, atol=1e-6)


def test_crossfade_removes_the_jump_between_two_noise_realisations() -> None:
    frames, crossfade, step = 40, 480, 0.3
    planner = WindowPlanner(context=3, first_frames=1, max_frames=8)
    windows = plan_all(planner, [1] * frames)
    signal = smooth_signal(frames, seed=3)
    natural = float(np.abs(np.diff(signal)).max())
    # Each decode of a noisy codec differs; here neighbouring windows disagree by `step`.
    offsets = {w: np.float32(step / 2 * (-1) ** i) for i, w in enumerate(windows)}

    def decode(w: Window) -> np.ndarray:
        return signal[w.start * SPF : w.end * SPF] + offsets[w]

    hard = join(windows, decode, 0)
    seams = [w.keep_end * SPF - 1 for w in windows[:-1]]
    assert np.abs(np.diff(hard))[seams].min() > step - 2 * natural, "hard seams must show"
    out = join(windows, decode, crossfade)
    assert out.shape == (frames * SPF,)
    # A linear blend over 2X samples spreads the step: no sample-to-sample jump beyond
    # the signal's own plus step / 2X, anywhere (not only at the seam index).
    assert np.abs(np.diff(out)).max() <= natural + step / (2 * crossfade) + 1e-6


def test_crossfade_is_clamped_to_the_overlap_and_half_a_chunk() -> None:
    frames = 6
    signal = smooth_signal(frames)
    windows = plan_all(WindowPlanner(context=1, first_frames=1, max_frames=1), [frames])
    for crossfade in (1024, 2048, 10_000):
        out = join(windows, lambda w: signal[w.start * SPF : w.end * SPF], crossfade)
        np.testing.assert_allclose(out, signal, atol=1e-6)
    joiner = SeamJoiner(10_000)
    joiner.push(windows[0], signal[windows[0].start * SPF : windows[0].end * SPF])
    assert joiner.held == SPF // 2


def test_push_checks_its_inputs() -> None:
    joiner = SeamJoiner(0)
    with pytest.raises(ValueError, match="samples"):
        joiner.push(Window(0, 2, 0, 1), np.zeros(SPF, np.float32))
    with pytest.raises(ValueError, match="continue"):
        joiner.push(Window(0, 3, 1, 2), np.zeros(3 * SPF, np.float32))
    with pytest.raises(ValueError):
        SeamJoiner(-1)
