"""Real PyAV both ways: encode with the streaming encoders, decode the bytes back."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.audio.encoders import FORMATS, MEDIA_TYPES, create_encoder, to_s16le
from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.errors import InvalidRequest

LOSSY = ("mp3", "opus", "aac")
LOSSLESS = ("flac", "wav", "pcm")
PYAV_FORMATS = ("mp3", "opus", "aac", "flac")
SECONDS = 3.0

# Most decoded samples a format may add beyond the input. mp3 and aac cannot signal
# the encoder's priming delay in a stream (LAME ~1105 samples, AAC 1024) and pad the
# last frame (mp3 576, aac 1024 samples at 24 kHz); Ogg Opus trims both with pre-skip
# and the end granule; the lossless formats are exact.
MAX_EXTRA = {"mp3": 3 * 576, "aac": 2 * 1024, "opus": 0, "flac": 0, "wav": 0, "pcm": 0}
# A complete mp3 has a LAME/Xing header with the delay and padding: gapless.
MAX_EXTRA_COMPLETE = {**MAX_EXTRA, "mp3": 0}


def signal(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """440 Hz sine plus a 200 -> 4000 Hz chirp over SECONDS, defined at any rate."""
    sweep = 3800.0 / SECONDS
    return 0.4 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(
        2 * np.pi * (200 * t + sweep / 2 * t * t)
    )


def sampled(rate: int, seconds: float = SECONDS) -> npt.NDArray[np.float32]:
    return signal(np.arange(round(rate * seconds)) / rate).astype(np.float32)


@dataclass
class Decoded:
    samples: npt.NDArray[np.float32]
    rate: int
    channels: int


def decode(data: bytes, fmt: str) -> Decoded:
    # Raw pcm has no container to probe: say what it is.
    if fmt == "pcm":
        kwargs: dict[str, object] = {
            "format": "s16le",
            "options": {"sample_rate": str(SAMPLE_RATE), "ch_layout": "mono"},
        }
    else:
        kwargs = {}
    with av.open(io.BytesIO(data), **kwargs) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
    pcm = np.concatenate(frames, axis=1)[0] if frames else np.zeros(0)
    if pcm.dtype == np.int16:
        pcm = pcm / 32767.0
    return Decoded(pcm.astype(np.float32), rate, channels)


def encode(fmt: str, pcm: npt.NDArray[np.float32], sizes: list[int], *, streaming: bool) -> bytes:
    encoder = create_encoder(fmt, streaming=streaming)
    parts, start = [], 0
    for size in sizes:
        parts.append(encoder.write(pcm[start : start + size]))
        start += size
    assert start >= len(pcm), "chunk schedule must cover the signal"
    parts.append(encoder.finalize())
    return b"".join(parts)


def irregular_sizes(total: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.choice([0, 1, 7, 333, 576, 1024, 2048, 4999])))
    return sizes


def best_alignment(decoded: npt.NDArray[np.float32], rate: int, max_lag: int) -> float:
    """Correlation with the analytic signal at the lag (codec delay) that fits best."""
    reference = signal(np.arange(len(decoded)) / rate)
    size = 2 * len(decoded)
    cross = np.fft.irfft(np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(reference, size)), size)
    lag = int(np.argmax(cross[: max_lag + 1]))
    aligned, expected = decoded[lag:], reference[: len(decoded) - lag]
    return float(np.corrcoef(aligned, expected)[0, 1])


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "complete"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_duration_rate_and_content(fmt: str, streaming: bool) -> None:
    pcm = sampled(SAMPLE_RATE)
    data = encode(fmt, pcm, irregular_sizes(len(pcm), seed=1), streaming=streaming)
    out = decode(data, fmt)

    assert out.channels == 1
    # Opus always decodes at 48 kHz; the stream itself was encoded at 24 kHz.
    assert out.rate == (48_000 if fmt == "opus" else SAMPLE_RATE)
    ratio = out.rate // SAMPLE_RATE
    extra = len(out.samples) - ratio * len(pcm)
    max_extra = (MAX_EXTRA if streaming else MAX_EXTRA_COMPLETE)[fmt]
    assert 0 <= extra <= max_extra * ratio

    if fmt in LOSSLESS:
        expected = np.rint(np.clip(pcm, -1, 1) * 32767) / 32767
        np.testing.assert_allclose(out.samples, expected, atol=0.5 / 32767)
    else:
        # The lag search covers the priming delay; at these bit rates all three codecs
        # reach > 0.99 on this signal, so 0.98 leaves room for other encoder builds.
        lag_limit = (max_extra + 1200) * ratio
        assert best_alignment(out.samples, out.rate, lag_limit) > 0.98


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=25),
    streaming=st.booleans(),
    fmt=st.sampled_from(["pcm", "wav"]),
)
def test_pcm_and_wav_bytes_do_not_depend_on_chunking(
    sizes: list[int], streaming: bool, fmt: str
) -> None:
    rng = np.random.default_rng(len(sizes))
    pcm = rng.uniform(-1.2, 1.2, sum(sizes)).astype(np.float32)
    data = encode(fmt, pcm, sizes, streaming=streaming)

    body = to_s16le(pcm)
    if fmt == "pcm":
        assert data == body
    else:
        assert data[44:] == body
        size_field = 0xFFFFFFFF if streaming else len(body)
        assert struct.unpack_from("<I", data, 40)[0] == size_field
    decoded = decode(data, fmt).samples if pcm.size else np.zeros(0, dtype=np.float32)
    np.testing.assert_array_equal(decoded, np.rint(np.clip(pcm, -1, 1) * 32767) / 32767)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 6000), min_size=1, max_size=12),
    fmt=st.sampled_from(PYAV_FORMATS),
)
def test_codec_output_does_not_depend_on_chunking(sizes: list[int], fmt: str) -> None:
    """Frames are cut at the codec's frame size, never at write boundaries."""
    # At least one Orpheus frame, the shortest audio the gateway sends at speed 1: FFmpeg's
    # ADTS probe cannot recognise a stream of under 1024 samples (two AAC frames).
    pcm = sampled(SAMPLE_RATE, 1.0)[: max(sum(sizes), SAMPLES_PER_FRAME)]
    sizes = [*sizes, len(pcm)]  # cover the rest when the schedule is short
    chunked = decode(encode(fmt, pcm, sizes, streaming=True), fmt).samples
    one_shot = decode(encode(fmt, pcm, [len(pcm)], streaming=True), fmt).samples
    np.testing.assert_array_equal(chunked, one_shot)


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_emits_decodable_audio_before_finalize(fmt: str) -> None:
    pcm = sampled(SAMPLE_RATE)
    encoder = create_encoder(fmt)
    half_second = SAMPLE_RATE // 2
    first = encoder.write(pcm[:SAMPLES_PER_FRAME])
    assert first, "the first write must already return bytes (header and/or audio)"
    sent = first + b"".join(
        encoder.write(pcm[start : start + SAMPLES_PER_FRAME])
        for start in range(SAMPLES_PER_FRAME, half_second, SAMPLES_PER_FRAME)
    )
    prefix = decode(sent, fmt)
    # Codec lookahead and 40 ms Ogg pages hold back a little, never most of it.
    assert len(prefix.samples) / prefix.rate >= 0.3
    encoder.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_first_chunk_is_playable_from_its_own_bytes(fmt: str) -> None:
    """The first chunk (the 2-frame start-up buffer, 171 ms) gives audio a player can start
    on without waiting for the next chunk: codec lookahead and one page at most wait."""
    first = create_encoder(fmt).write(sampled(SAMPLE_RATE)[: 2 * SAMPLES_PER_FRAME])
    prefix = decode(first, fmt)
    assert len(prefix.samples) / prefix.rate >= 0.09, fmt


def test_streamed_wav_header_has_unknown_sizes_and_stays_readable() -> None:
    pcm = sampled(SAMPLE_RATE, 0.5)
    data = encode("wav", pcm, irregular_sizes(len(pcm), seed=2), streaming=True)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    assert struct.unpack_from("<I", data, 4)[0] == 0xFFFFFFFF
    assert struct.unpack_from("<I", data, 40)[0] == 0xFFFFFFFF
    assert data.count(b"RIFF") == 1
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
            SAMPLE_RATE,
            1,
            2,
        )
        frames = reader.readframes(10 * len(pcm))
    assert frames == to_s16le(pcm)


def test_complete_wav_has_exact_sizes() -> None:
    pcm = sampled(SAMPLE_RATE, 1.3)
    encoder = create_encoder("wav", streaming=False)
    assert encoder.write(pcm[:1000]) == b""
    data = encoder.write(pcm[1000:]) + encoder.finalize()
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getnframes() == len(pcm)
        assert reader.getframerate() == SAMPLE_RATE
        assert reader.readframes(len(pcm)) == to_s16le(pcm)


def flac_streaminfo(data: bytes) -> tuple[int, int, int]:
    """(sample rate, channels, total samples) from the mandatory first metadata block."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO
    packed = int.from_bytes(data[18:26], "big")
    return packed >> 44, ((packed >> 41) & 0x7) + 1, packed & ((1 << 36) - 1)


@pytest.mark.parametrize(("streaming", "known"), [(False, True), (True, False)])
def test_flac_streaminfo_total_samples(streaming: bool, known: bool) -> None:
    pcm = sampled(SAMPLE_RATE, 1.7)
    data = encode("flac", pcm, irregular_sizes(len(pcm), seed=3), streaming=streaming)
    rate, channels, total = flac_streaminfo(data)
    assert (rate, channels) == (SAMPLE_RATE, 1)
    # A stream cannot go back to fill in its length; 0 means "unknown" in FLAC.
    assert total == (len(pcm) if known else 0)


def test_media_types_cover_every_format() -> None:
    assert set(MEDIA_TYPES) == set(FORMATS)
    for fmt in FORMATS:
        encoder = create_encoder(fmt)
        assert (encoder.format, encoder.media_type) == (fmt, MEDIA_TYPES[fmt])
        encoder.close()


@pytest.mark.parametrize("fmt", ["ogg", "MP3", "", "webm"])
def test_unknown_format_is_an_invalid_request(fmt: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        create_encoder(fmt)
    assert caught.value.param == "response_format"
    assert all(name in caught.value.message for name in FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_finalize_without_audio_and_use_after_finalize(fmt: str) -> None:
    encoder = create_encoder(fmt)
    encoder.finalize()
    with pytest.raises(RuntimeError):
        encoder.write(np.zeros(10, dtype=np.float32))


@pytest.mark.parametrize("fmt", FORMATS)
def test_rejects_multichannel_input(fmt: str) -> None:
    encoder = create_encoder(fmt)
    with pytest.raises(ValueError):
        encoder.write(np.zeros((2, 100), dtype=np.float32))
    encoder.close()


def test_out_of_range_samples_are_clipped() -> None:
    data = create_encoder("pcm").write(np.array([2.0, -3.0, 0.5, -1.0], dtype=np.float32))
    assert np.frombuffer(data, "<i2").tolist() == [32767, -32767, 16384, -32767]


CLOSE_RACE = """
import random, sys, threading, time
import numpy as np
from app.audio.encoders import create_encoder

rng = random.Random(0)
pcm = (np.sin(np.arange(48_000) / 10) * 0.3).astype(np.float32)
wrote = closed_after = 0
for _ in range(ROUNDS):
    encoder = create_encoder(sys.argv[1])
    def work():
        global wrote
        try:
            for _ in range(3):
                encoder.write(pcm)
                wrote += 1
            encoder.finalize()
        except RuntimeError:
            pass
    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(rng.random() * 0.01)
    encoder.close()
    thread.join()
    try:
        encoder.write(pcm)
    except RuntimeError:
        closed_after += 1
print(wrote, closed_after)
"""


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - {"pcm", "wav"}))
def test_close_while_a_worker_thread_encodes_never_crashes(fmt: str) -> None:
    """The request's task is cancelled at its await when the client leaves; the thread
    encoding for it runs on, so `close` comes mid-write. Closing the container there
    freed what FFmpeg was using: a segfault in libavformat. A child process, so that a
    crash fails this test instead of killing the run."""
    rounds = 60
    script = CLOSE_RACE.replace("ROUNDS", str(rounds))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script, fmt], cwd=root, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(root), "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    wrote, closed_after = map(int, done.stdout.split())
    assert closed_after == rounds  # closed for good, whichever side closed it
    assert 0 < wrote < 3 * rounds  # closes landed both mid-write and between writes
