"""Reference clips: real files of every common container, decoded by real PyAV."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audio.pcm import SAMPLE_RATE
from app.audio.reference import (
    EDGE_PAD_SECONDS,
    ReferenceLimits,
    load_reference,
    trim_silence,
)
from app.errors import InvalidRequest, UnsupportedMediaType
from tests.support.clips import CLIP_FORMATS, chirp, encode_clip

LIMITS = ReferenceLimits(min_seconds=1.0, max_seconds=5.0)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def padded(signal: np.ndarray, rate: int, before: float, after: float) -> np.ndarray:
    return np.concatenate(
        [np.zeros(round(before * rate)), signal, np.zeros(round(after * rate))]
    ).astype(np.float32)


@pytest.mark.parametrize("fmt", sorted(CLIP_FORMATS))
@pytest.mark.parametrize(("rate", "channels"), [(44_100, 2), (16_000, 1)])
def test_every_container_decodes_to_trimmed_mono_24k(fmt: str, rate: int, channels: int) -> None:
    data = encode_clip(padded(chirp(2.0, rate), rate, 1.0, 0.7), rate, fmt, channels=channels)
    ref = load_reference(data, LIMITS)
    assert ref.pcm.dtype == np.float32 and ref.pcm.ndim == 1
    assert ref.source_channels == channels
    assert ref.decoded_seconds == pytest.approx(3.7, abs=0.08)  # codec priming/padding
    # The chirp (with its 20 ms fades) plus at most the edge pad on each side.
    assert 1.9 <= ref.seconds <= 2.0 + 2 * EDGE_PAD_SECONDS + 0.03, ref.seconds
    assert np.abs(ref.pcm).max() > 0.3


def test_resampling_keeps_the_frequency_and_level() -> None:
    """A 1 kHz tone at 44.1 kHz stereo comes out as 1 kHz at 24 kHz: real resampling,
    not sample dropping (which would shift it), and a mean downmix (same level)."""
    data = encode_clip(tone(1000.0, 2.0, 44_100, 0.4), 44_100, "wav", channels=2)
    pcm = load_reference(data, LIMITS).pcm
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / pcm.size
    assert peak_hz == pytest.approx(1000.0, abs=2.0)
    middle = pcm[pcm.size // 4 : -pcm.size // 4]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.02)


def test_stereo_is_averaged() -> None:
    left = tone(440.0, 2.0, 24_000, 0.6)
    data = encode_clip(np.stack([left, np.zeros_like(left)]), 24_000, "flac", channels=2)
    pcm = load_reference(data, LIMITS).pcm
    middle = pcm[4_800:-4_800]
    assert np.abs(middle).max() == pytest.approx(0.3, abs=0.01)


def test_file_object_is_read_in_place() -> None:
    data = encode_clip(chirp(1.5, 24_000), 24_000, "wav")
    assert (
        load_reference(io.BytesIO(data), LIMITS).pcm.size == load_reference(data, LIMITS).pcm.size
    )


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (b"", InvalidRequest, "empty_file"),
        (b"RIFF....WAVEfmt garbage" * 10, UnsupportedMediaType, "unsupported_media_type"),
        (b"hello, this is plain text\n" * 100, UnsupportedMediaType, "unsupported_media_type"),
    ],
)
def test_unusable_files(data: bytes, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as info:
        load_reference(data, LIMITS)
    assert getattr(info.value, "code", None) == code
    assert getattr(info.value, "param", None) == "reference_audio"


def test_silent_file() -> None:
    data = encode_clip(np.zeros(48_000, dtype=np.float32), 24_000, "wav")
    with pytest.raises(InvalidRequest) as info:
        load_reference(data, LIMITS)
    assert info.value.code == "silent_audio"


def test_bounds_apply_after_trimming() -> None:
    short = encode_clip(padded(chirp(0.6, 24_000), 24_000, 2.0, 2.0), 24_000, "wav")
    with pytest.raises(InvalidRequest) as info:
        load_reference(short, LIMITS)
    assert info.value.code == "audio_too_short"
    # 4 s of sound inside 3 s of silence each side: 10 s decoded, accepted.
    fits = encode_clip(padded(chirp(4.0, 16_000), 16_000, 3.0, 3.0), 16_000, "flac")
    assert load_reference(fits, LIMITS).seconds < 4.2
    long = encode_clip(chirp(5.5, 16_000), 16_000, "flac")
    with pytest.raises(InvalidRequest) as info:
        load_reference(long, LIMITS)
    assert info.value.code == "audio_too_long"


def test_decoding_stops_at_the_raw_bound() -> None:
    """Hours of silence compress to little; decoding must stop, not fill memory."""
    limits = ReferenceLimits(min_seconds=1.0, max_seconds=1.0)  # raw bound 12 s
    data = encode_clip(np.zeros(8_000 * 20, dtype=np.float32), 8_000, "flac")
    with pytest.raises(InvalidRequest) as info:
        load_reference(data, limits)
    assert info.value.code == "audio_too_long" and "before trimming" in info.value.message


@settings(max_examples=40, deadline=None)
@given(
    before=st.floats(0.0, 1.0),
    after=st.floats(0.0, 1.0),
    seconds=st.floats(0.2, 1.5),
    amplitude=st.floats(0.01, 1.0),
    noise_db=st.floats(-90, -70),
)
def test_trim_keeps_the_sound_and_drops_the_silence(
    before: float, after: float, seconds: float, amplitude: float, noise_db: float
) -> None:
    rate = SAMPLE_RATE
    sound = tone(300.0, seconds, rate, amplitude)
    rng = np.random.default_rng(0)
    pcm = padded(sound, rate, before, after)
    pcm += rng.normal(0, 10 ** (noise_db / 20), pcm.size).astype(np.float32)
    trimmed = trim_silence(pcm)
    assert np.shares_memory(trimmed, pcm)  # a slice of the input, not a copy
    start = (trimmed.ctypes.data - pcm.ctypes.data) // pcm.itemsize
    end = start + trimmed.size
    sound_start, sound_end = round(before * rate), round(before * rate) + sound.size
    window = round(0.01 * rate)
    pad = round(EDGE_PAD_SECONDS * rate)
    # All of the sound is kept (to within the sample a sine crosses zero at)...
    assert start <= sound_start + window and end >= sound_end - window
    # ...and the silence beyond the edge pad is gone.
    assert start >= sound_start - pad - window and end <= sound_end + pad + window


def test_trim_of_silence_is_empty() -> None:
    assert trim_silence(np.zeros(24_000, dtype=np.float32)).size == 0
    assert trim_silence(np.full(24_000, 1e-4, dtype=np.float32)).size == 0  # -80 dBFS
    assert trim_silence(np.zeros(10, dtype=np.float32)).size == 0
