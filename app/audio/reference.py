"""A cloning reference from an uploaded file: decoded, mono, 24 kHz, trimmed, bounded.

Any container/codec FFmpeg reads (wav, mp3, flac, ogg/opus, m4a/aac, ...) is decoded
with PyAV. Frames are converted to float planar at 24 kHz by libswresample (a real
band-limited resampler, keeping the source channel layout), then averaged to mono
here so every channel weighs the same whatever the layout. Leading and trailing
silence is cut before the length bounds are applied, since what matters for the
prompt is the speech the codec will encode.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO, Final

import av
import av.error
import numpy as np
import numpy.typing as npt

from app.audio.pcm import SAMPLE_RATE
from app.errors import InvalidRequest, UnsupportedMediaType

SILENCE_FLOOR: Final = 10 ** (-60 / 20)
"""Window RMS below -60 dBFS is silence whatever the level of the rest."""
RELATIVE_THRESHOLD_DB: Final = -40.0
"""Edges quieter than the loudest window by more than this are trimmed."""
WINDOW_SECONDS: Final = 0.01
EDGE_PAD_SECONDS: Final = 0.05
"""Kept around the detected speech so soft onsets and decays are not clipped."""


@dataclass(frozen=True)
class ReferenceLimits:
    min_seconds: float = 1.0
    max_seconds: float = 30.0

    @property
    def max_decoded_seconds(self) -> float:
        """Decoding stops past this (before trimming): a small compressed file may
        expand to hours of audio, which must not be held in memory."""
        return 2 * self.max_seconds + 10.0


@dataclass(frozen=True)
class ReferenceAudio:
    pcm: npt.NDArray[np.float32]
    """Mono float32 at `SAMPLE_RATE`, trimmed of silence."""
    source_codec: str
    source_rate: int
    source_channels: int
    decoded_seconds: float
    """Length before trimming."""

    @property
    def seconds(self) -> float:
        return self.pcm.size / SAMPLE_RATE


def load_reference(
    data: bytes | BinaryIO, limits: ReferenceLimits, *, param: str = "reference_audio"
) -> ReferenceAudio:
    """Decode, downmix, resample, trim and bound an uploaded reference.

    Raises `InvalidRequest` (empty, undecodable content, silent, too short, too long)
    or `UnsupportedMediaType` (not a recognisable audio file).
    """
    source: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
    source.seek(0, io.SEEK_END)
    if source.tell() == 0:
        raise InvalidRequest(f"{param} is an empty file.", param=param, code="empty_file")
    source.seek(0)
    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, ValueError) as exc:
        raise UnsupportedMediaType(
            f"{param} is not a recognisable audio file (wav, mp3, flac, ogg/opus, m4a/aac).",
            param=param,
        ) from exc
    with container:
        if not container.streams.audio:
            raise UnsupportedMediaType(f"{param} has no audio stream.", param=param)
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        pcm = _decode(container, stream, limits, param)
    decoded_seconds = pcm.size / SAMPLE_RATE
    trimmed = trim_silence(pcm)
    if trimmed.size == 0:
        raise InvalidRequest(
            f"{param} is silent (no sound above {20 * np.log10(SILENCE_FLOOR):.0f} dBFS).",
            param=param,
            code="silent_audio",
        )
    seconds = trimmed.size / SAMPLE_RATE
    if seconds < limits.min_seconds:
        raise InvalidRequest(
            f"{param} has {seconds:.2f} s of sound after trimming silence; "
            f"at least {limits.min_seconds:g} s is needed.",
            param=param,
            code="audio_too_short",
        )
    if seconds > limits.max_seconds:
        raise InvalidRequest(
            f"{param} has {seconds:.2f} s of sound after trimming silence; "
            f"the limit is {limits.max_seconds:g} s.",
            param=param,
            code="audio_too_long",
        )
    return ReferenceAudio(trimmed, codec, rate, channels, decoded_seconds)


def _decode(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    limits: ReferenceLimits,
    param: str,
) -> npt.NDArray[np.float32]:
    resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
    budget = round(limits.max_decoded_seconds * SAMPLE_RATE)
    chunks: list[npt.NDArray[np.float32]] = []
    total = 0

    def take(frames: list[av.AudioFrame]) -> None:
        nonlocal total
        for out in frames:
            planes = out.to_ndarray()
            mono = planes.reshape(-1, out.samples).mean(axis=0, dtype=np.float32)
            chunks.append(mono)
            total += mono.size
        if total > budget:
            raise InvalidRequest(
                f"{param} is longer than {limits.max_decoded_seconds:g} s before trimming "
                f"silence; the limit after trimming is {limits.max_seconds:g} s.",
                param=param,
                code="audio_too_long",
            )

    try:
        for frame in container.decode(stream):
            # Timestamps of damaged or concatenated files jump; the resampler needs none.
            frame.pts = None
            take(resampler.resample(frame))
        take(resampler.resample(None))
    except (av.error.FFmpegError, ValueError) as exc:
        raise InvalidRequest(
            f"{param} could not be decoded: the file is damaged or truncated.",
            param=param,
            code="invalid_audio",
        ) from exc
    if not chunks:
        raise InvalidRequest(f"{param} contains no audio samples.", param=param, code="empty_file")
    pcm = np.concatenate(chunks)
    if not np.isfinite(pcm).all():
        raise InvalidRequest(f"{param} decodes to invalid samples.", param=param)
    return np.clip(pcm, -1.0, 1.0).astype(np.float32, copy=False)


def trim_silence(pcm: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """`pcm` without leading/trailing silence; empty when it is all silence.

    A 10 ms window is sound when its RMS exceeds both -60 dBFS and the loudest
    window's RMS minus 40 dB; 50 ms around the first and last sound windows is kept.
    """
    window = round(WINDOW_SECONDS * SAMPLE_RATE)
    n = pcm.size // window
    if n == 0:
        return pcm[:0]
    frames = pcm[: n * window].astype(np.float64).reshape(n, window)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    peak = float(rms.max())
    threshold = max(SILENCE_FLOOR, peak * 10 ** (RELATIVE_THRESHOLD_DB / 20))
    loud = np.flatnonzero(rms > threshold)
    if loud.size == 0:
        return pcm[:0]
    pad = round(EDGE_PAD_SECONDS * SAMPLE_RATE)
    start = max(0, int(loud[0]) * window - pad)
    end = min(pcm.size, (int(loud[-1]) + 1) * window + pad)
    return pcm[start:end]
