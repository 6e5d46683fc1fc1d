"""Telephony and WebRTC audio: linear16, mu-law or A-law at any sample rate, bare or in wav.

    RawEncoder("mulaw", 8000, container="none")

Voice-agent protocols (Deepgram's `/v1/speak`) ask for raw samples at the rate their
transport runs: 8 kHz G.711 for phone lines, 16 or 48 kHz linear PCM for WebRTC. One
encoder object serves one stream: it resamples with libswresample (PyAV's
`AudioResampler`, one filter state for the whole stream, so chunk edges leave no trace
and no sample is lost or repeated) and encodes with FFmpeg's own G.711 codecs.
`finalize` drains the resampler's delay, so a stream holds round(n * rate / 24000)
samples for n samples in. It implements `StreamingEncoder` (app/audio/encoders.py).
"""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import Any, Final, Literal, get_args

import av
import numpy as np
import numpy.typing as npt

from app.audio.encoders import to_s16le
from app.audio.pcm import SAMPLE_RATE

RawEncoding = Literal["linear16", "mulaw", "alaw"]
RAW_ENCODINGS: Final[tuple[str, ...]] = get_args(RawEncoding)
Container = Literal["none", "wav"]

_CODECS: Final = {"mulaw": "pcm_mulaw", "alaw": "pcm_alaw"}
# RIFF format tags: 1 PCM, 6 A-law, 7 mu-law (RFC 2361).
_WAV_TAGS: Final = {"linear16": 1, "alaw": 6, "mulaw": 7}
_UNKNOWN_SIZE: Final = 0xFFFFFFFF

MEDIA_TYPES: Final = {"linear16": "audio/pcm", "mulaw": "audio/PCMU", "alaw": "audio/PCMA"}
"""Media types of the bare encodings (``;rate=`` is added); little-endian linear PCM is
not audio/L16, which is big-endian (RFC 2586)."""


def wav_header(encoding: RawEncoding, rate: int) -> bytes:
    """A streaming header ("unknown length" sizes, as streaming servers send)."""
    width = 2 if encoding == "linear16" else 1
    pcm = encoding == "linear16"
    # Non-PCM formats carry cbSize (0) in an 18-byte fmt chunk.
    fmt = struct.pack("<HHIIHH", _WAV_TAGS[encoding], 1, rate, rate * width, width, 8 * width) + (
        b"" if pcm else struct.pack("<H", 0)
    )
    return (
        struct.pack("<4sI4s", b"RIFF", _UNKNOWN_SIZE, b"WAVE")
        + struct.pack("<4sI", b"fmt ", len(fmt))
        + fmt
        + struct.pack("<4sI", b"data", _UNKNOWN_SIZE)
    )


class RawEncoder:
    """float32 mono at 24 kHz in; ``encoding`` samples at ``rate`` out."""

    blocking = False
    """Resampling and G.711 cost microseconds per chunk: less than a hop to a thread."""

    def __init__(self, encoding: RawEncoding, rate: int, *, container: Container = "none") -> None:
        if encoding not in RAW_ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}")
        if rate < 1000:
            raise ValueError("rate must be at least 1000 Hz")
        self.format: str = encoding
        self.rate = rate
        bare = f"{MEDIA_TYPES[encoding]};rate={rate}"
        self.media_type = "audio/wav" if container == "wav" else bare
        self._header = wav_header(encoding, rate) if container == "wav" else b""
        self._resampler: Any = None
        if rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self._codec: Any = None
        if encoding in _CODECS:
            codec = av.CodecContext.create(_CODECS[encoding], "w")
            codec.sample_rate, codec.format, codec.layout = rate, "s16", "mono"
            codec.open()
            self._codec = codec
        self._time_base = Fraction(1, SAMPLE_RATE)
        self._pts = 0
        self._done = False

    def write(self, pcm: npt.NDArray[np.float32]) -> bytes:
        self._check_open()
        samples = np.asarray(pcm, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono PCM as a 1-D array, got shape {samples.shape}")
        if not samples.size:
            return self._take_header()
        if self._resampler is None:
            return self._take_header() + self._encode(to_s16le(samples))
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(np.clip(samples, -1.0, 1.0)).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += samples.size
        return self._take_header() + self._resampled(self._resampler.resample(frame))

    def finalize(self) -> bytes:
        self._check_open()
        self._done = True
        tail = self._resampled(self._resampler.resample(None)) if self._resampler else b""
        return self._take_header() + tail

    def close(self) -> None:
        self._done = True

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError(f"{self.format} encoder already finalized or closed")

    def _take_header(self) -> bytes:
        header, self._header = self._header, b""
        return header

    def _resampled(self, frames: list[Any]) -> bytes:
        data = b"".join(bytes(f.to_ndarray().astype("<i2", copy=False).tobytes()) for f in frames)
        return self._encode(data)

    def _encode(self, s16: bytes) -> bytes:
        if self._codec is None or not s16:
            return s16
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(s16, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.rate
        return b"".join(bytes(packet) for packet in self._codec.encode(frame))
