"""Raw telephony/WebRTC encodings at any rate, decoded back with FFmpeg (PyAV)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audio.pcm import SAMPLE_RATE
from app.audio.raw import RAW_ENCODINGS, RawEncoder

RATES = [8000, 16000, 24000, 32000, 48000]
_FORMATS = {"linear16": "s16le", "mulaw": "mulaw", "alaw": "alaw"}


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def encode(encoder: RawEncoder, pcm: np.ndarray, sizes: list[int]) -> bytes:
    out, at = bytearray(), 0
    for size in sizes:
        out += encoder.write(pcm[at : at + size])
        at += size
    out += encoder.write(pcm[at:])
    return bytes(out + encoder.finalize())


def decode(data: bytes, encoding: str, rate: int, *, wav: bool = False) -> np.ndarray:
    """FFmpeg's own reading of the bytes, as float samples."""
    options = {} if wav else {"sample_rate": str(rate), "channels": "1"}
    fmt = "wav" if wav else _FORMATS[encoding]
    with av.open(io.BytesIO(data), format=fmt, options=options) as container:
        stream = container.streams.audio[0]
        assert stream.rate == rate
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
    samples = np.concatenate(chunks)
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768
    return samples.astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("encoding", RAW_ENCODINGS)
def test_every_encoding_and_rate_decodes_to_the_same_sound(encoding: str, rate: int) -> None:
    pcm = tone(1.5)
    data = encode(RawEncoder(encoding, rate), pcm, [2048] * 10)  # type: ignore[arg-type]
    width = 2 if encoding == "linear16" else 1
    assert len(data) == round(len(pcm) * rate / SAMPLE_RATE) * width
    decoded = decode(data, encoding, rate)
    assert len(decoded) == round(len(pcm) * rate / SAMPLE_RATE)
    assert peak_hz(decoded, rate) == pytest.approx(440.0, abs=2.0)
    # G.711 is 8-bit companded: about 38 dB SNR on a loud tone; linear16 much better.
    expected = decode(encode(RawEncoder("linear16", rate), pcm, []), "linear16", rate)
    error = np.sqrt(np.mean((decoded - expected) ** 2)) / np.sqrt(np.mean(expected**2))
    assert error < (1e-9 if encoding == "linear16" else 0.03)


def test_linear16_at_24khz_is_the_gateway_pcm_unchanged() -> None:
    pcm = tone(0.3)
    data = encode(RawEncoder("linear16", SAMPLE_RATE), pcm, [100, 7])
    expected = np.rint(np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    assert data == expected


@pytest.mark.parametrize("encoding", RAW_ENCODINGS)
def test_wav_container_carries_rate_and_format(encoding: str) -> None:
    pcm = tone(0.5)
    data = encode(RawEncoder(encoding, 8000, container="wav"), pcm, [4096])  # type: ignore[arg-type]
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    decoded = decode(data, encoding, 8000, wav=True)
    assert len(decoded) == round(len(pcm) * 8000 / SAMPLE_RATE)
    # An empty stream is still a valid header.
    assert RawEncoder(encoding, 8000, container="wav").finalize()[:4] == b"RIFF"  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(RAW_ENCODINGS),
    st.sampled_from([8000, 16000, 48000]),
    st.lists(st.integers(0, 5000), max_size=12),
)
def test_chunking_changes_nothing(encoding: str, rate: int, sizes: list[int]) -> None:
    pcm = tone(1.0)
    whole = encode(RawEncoder(encoding, rate), pcm, [])  # type: ignore[arg-type]
    chunked = encode(RawEncoder(encoding, rate), pcm, sizes)  # type: ignore[arg-type]
    assert len(chunked) == len(whole)
    a, b = decode(whole, encoding, rate), decode(chunked, encoding, rate)
    assert np.abs(a - b).max() <= (2 / 32768 if encoding == "linear16" else 0.02)


def test_a_spent_encoder_refuses_more() -> None:
    encoder = RawEncoder("mulaw", 8000)
    encoder.finalize()
    with pytest.raises(RuntimeError):
        encoder.write(tone(0.01))
    with pytest.raises(ValueError):
        RawEncoder("opus", 8000)  # type: ignore[arg-type]
