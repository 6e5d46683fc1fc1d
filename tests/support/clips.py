"""Synthetic reference clips written as real audio files with PyAV (for cloning tests)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

# format -> (container, codec, sample format)
CLIP_FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("wav", "pcm_s16le", "s16"),
    "mp3": ("mp3", "libmp3lame", "fltp"),
    "flac": ("flac", "flac", "s16"),
    "ogg": ("ogg", "libopus", "flt"),
    "m4a": ("ipod", "aac", "fltp"),
}


def chirp(
    seconds: float, rate: int, *, f0: float = 150.0, f1: float = 3000.0, amplitude: float = 0.5
) -> npt.NDArray[np.float32]:
    """A linear sweep from f0 to f1 Hz, with 20 ms fades so edges are not clicks."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    signal = amplitude * np.sin(phase)
    fade = min(len(t) // 2, round(0.02 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        signal[:fade] *= ramp
        signal[-fade:] *= ramp[::-1]
    return signal.astype(np.float32)


def encode_clip(
    pcm: npt.NDArray[np.float32], rate: int, fmt: str = "wav", *, channels: int = 1
) -> bytes:
    """`pcm` (mono, or (channels, n)) as a complete file of `fmt` (see CLIP_FORMATS)."""
    container_name, codec, sample_fmt = CLIP_FORMATS[fmt]
    planes = np.atleast_2d(pcm).astype(np.float32)
    if planes.shape[0] == 1 and channels > 1:
        planes = np.repeat(planes, channels, axis=0)
    out_rate = 48_000 if codec == "libopus" else rate
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_name) as container:
        stream = container.add_stream(codec, rate=out_rate)
        stream.layout = "mono" if planes.shape[0] == 1 else "stereo"
        stream.format = sample_fmt
        resampler = av.AudioResampler(format=sample_fmt, layout=stream.layout, rate=out_rate)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planes), format="fltp", layout=stream.layout.name
        )
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = 0
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
