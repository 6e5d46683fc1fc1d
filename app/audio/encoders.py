"""One streaming encoder object per response: float32 PCM in, container bytes out.

Every encoder takes mono float32 at ``SAMPLE_RATE`` in chunks of any length and
returns, after each ``write``, the bytes a client can be sent right away, so audio
reaches the listener while synthesis goes on. ``finalize`` flushes the codec and
the container trailer.

Streamed containers cannot be rewritten afterwards, so their headers carry
"unknown length" (wav sizes 0xFFFFFFFF, flac STREAMINFO without a sample count).
``streaming=False`` produces a complete file with exact headers instead; those
encoders keep everything in memory and return it from ``finalize``.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, Protocol

import av
import numpy as np
import numpy.typing as npt

from app.audio.formats import FORMATS, MEDIA_TYPES
from app.audio.pcm import SAMPLE_RATE
from app.errors import InvalidRequest

_INT16_SCALE: Final = 32767.0
_WAV_HEADER_SIZE: Final = 44
_UNKNOWN_SIZE: Final = 0xFFFFFFFF


class StreamingEncoder(Protocol):
    format: str
    media_type: str
    blocking: bool
    """Whether a write costs enough CPU (a codec) to belong in a worker thread; pcm and
    wav only convert samples, which costs less than the hop to a thread and back."""

    def write(self, pcm: npt.NDArray[np.float32]) -> bytes:
        """Encode mono float32 samples in [-1, 1]; return the bytes ready to send now."""
        ...

    def finalize(self) -> bytes:
        """Flush the codec and the container trailer; the encoder is spent afterwards."""
        ...

    def close(self) -> None:
        """Release the encoder without finishing the stream (client left, error).

        Safe from any thread while a write runs in a worker thread: the request's task is
        cancelled at its await, not the thread, so close may come mid-write."""
        ...


def create_encoder(fmt: str, *, streaming: bool = True) -> StreamingEncoder:
    if fmt == "pcm":
        return PcmEncoder()
    if fmt == "wav":
        return WavEncoder(streaming=streaming)
    spec = _PYAV_SPECS.get(fmt)
    if spec is None:
        raise InvalidRequest(
            f"Unsupported response_format {fmt!r}; valid formats are: {', '.join(FORMATS)}.",
            param="response_format",
        )
    return PyAVEncoder(fmt, spec, streaming=streaming)


def to_s16le(pcm: npt.NDArray[np.float32]) -> bytes:
    """Clip to [-1, 1] and quantise symmetrically, so 1.0 maps to 32767 and -1.0 to -32767."""
    return _to_int16(_as_mono_float(pcm)).astype("<i2", copy=False).tobytes()


def _as_mono_float(pcm: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    samples = np.asarray(pcm, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono PCM as a 1-D array, got shape {samples.shape}")
    return samples


def _to_int16(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    scaled = np.clip(samples, -1.0, 1.0) * _INT16_SCALE
    quantised: npt.NDArray[np.int16] = np.rint(scaled).astype(np.int16)
    return quantised


def _wav_header(data_bytes: int | None) -> bytes:
    """A canonical 44-byte PCM header; ``None`` writes the streaming "unknown size" marker."""
    channels, sample_width = 1, 2
    if data_bytes is None:
        riff_size = data_size = _UNKNOWN_SIZE
    else:
        riff_size, data_size = _WAV_HEADER_SIZE - 8 + data_bytes, data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,
        1,  # WAVE_FORMAT_PCM
        channels,
        SAMPLE_RATE,
        SAMPLE_RATE * channels * sample_width,
        channels * sample_width,
        8 * sample_width,
        b"data",
        data_size,
    )


class _SpentMixin:
    format: str
    _done: bool = False

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError(f"{self.format} encoder already finalized or closed")


class PcmEncoder(_SpentMixin):
    """Headerless s16le: each write is immediately sendable as is."""

    blocking = False

    def __init__(self) -> None:
        self.format = "pcm"
        self.media_type = MEDIA_TYPES["pcm"]

    def write(self, pcm: npt.NDArray[np.float32]) -> bytes:
        self._check_open()
        return to_s16le(pcm)

    def finalize(self) -> bytes:
        self._done = True
        return b""

    def close(self) -> None:
        self._done = True


class WavEncoder(_SpentMixin):
    """s16le in a RIFF/WAVE container.

    Streaming sends one header with 0xFFFFFFFF sizes first, as streaming servers do,
    since the length is unknown until synthesis ends; readers then read to EOF.
    """

    blocking = False

    def __init__(self, *, streaming: bool) -> None:
        self.format = "wav"
        self.media_type = MEDIA_TYPES["wav"]
        self._streaming = streaming
        self._header_sent = False
        self._data = bytearray()

    def write(self, pcm: npt.NDArray[np.float32]) -> bytes:
        self._check_open()
        data = to_s16le(pcm)
        if not self._streaming:
            self._data += data
            return b""
        if self._header_sent:
            return data
        self._header_sent = True
        return _wav_header(None) + data

    def finalize(self) -> bytes:
        self._check_open()
        self._done = True
        if self._streaming:
            return b"" if self._header_sent else _wav_header(None)
        data, self._data = bytes(self._data), bytearray()
        return _wav_header(len(data)) + data

    def close(self) -> None:
        self._done = True
        self._data = bytearray()


@dataclass(frozen=True)
class _PyAVSpec:
    container: str
    codec: str
    sample_format: str
    bit_rate: int | None = None
    container_options: dict[str, str] = field(default_factory=dict)


_PYAV_SPECS: Final[dict[str, _PyAVSpec]] = {
    # 24 kHz mono is MPEG-2 layer III (576-sample frames); 64 kb/s is transparent for speech.
    "mp3": _PyAVSpec("mp3", "libmp3lame", "fltp", 64_000),
    # The Ogg muxer holds packets until a page spans page_duration (default 1 s), and
    # writes a page only once the next one has begun: with 100 ms pages the first 170 ms
    # chunk left no page (+90 ms to the first audio). 40 ms pages put ~110 ms of it in the
    # first bytes for ~3 kb/s more page overhead (docs/benchmarks.md, first audio).
    "opus": _PyAVSpec("ogg", "libopus", "flt", 32_000, {"page_duration": "40000"}),
    "aac": _PyAVSpec("adts", "aac", "fltp", 64_000),
    # No 8 KiB padding block for later tag edits: nobody edits a response in place.
    "flac": _PyAVSpec("flac", "flac", "s16", None, {"metadata_header_padding": "0"}),
}


class _ByteSink:
    """Write-only, non-seekable sink: PyAV then writes a streamable container."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class PyAVEncoder(_SpentMixin):
    """One PyAV output container and codec context for the whole stream.

    Codecs want fixed frame sizes (mp3 576 at 24 kHz, aac 1024, opus 480, flac
    2304), so samples wait in ``_pending`` until a full frame exists; only the
    last frame may be short. Timestamps count samples, so nothing is lost or
    duplicated whatever the chunking.

    Writes run in a worker thread, and a client that leaves cancels the request's task,
    not that thread: closing the container under a running encode frees what FFmpeg is
    using (a segfault in libavformat, found by the soak). So ``close`` never closes under
    a write; the write in progress closes the container when it ends instead.
    """

    blocking = True

    def __init__(self, fmt: str, spec: _PyAVSpec, *, streaming: bool) -> None:
        self.format = fmt
        self.media_type = MEDIA_TYPES[fmt]
        self._spec = spec
        self._streaming = streaming
        self._sink: _ByteSink | io.BytesIO = _ByteSink() if streaming else io.BytesIO()
        self._container: Any = av.open(
            self._sink,
            mode="w",
            format=spec.container,
            container_options=dict(spec.container_options),
        )
        stream = self._container.add_stream(spec.codec, rate=SAMPLE_RATE)
        stream.layout = "mono"
        stream.format = spec.sample_format
        if spec.bit_rate is not None:
            stream.bit_rate = spec.bit_rate
        self._stream: Any = stream
        # Writing the header now lets the first write() return it with the first audio.
        self._container.start_encoding()
        self._frame_size: int = stream.codec_context.frame_size or 1024
        self._time_base = Fraction(1, SAMPLE_RATE)
        self._pending: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._pts = 0
        self._in_use = threading.Lock()
        self._close_requested = False

    def write(self, pcm: npt.NDArray[np.float32]) -> bytes:
        with self._using():
            samples = np.clip(_as_mono_float(pcm), -1.0, 1.0)
            pending = np.concatenate((self._pending, samples)) if self._pending.size else samples
            whole = len(pending) - len(pending) % self._frame_size
            for start in range(0, whole, self._frame_size):
                self._encode(pending[start : start + self._frame_size])
            self._pending = pending[whole:].copy()
            return self._take()

    def finalize(self) -> bytes:
        with self._using():
            self._done = True
            if self._pending.size:
                self._encode(self._pending)
                self._pending = np.zeros(0, dtype=np.float32)
            self._container.mux(self._stream.encode(None))
            self._release()
            if isinstance(self._sink, io.BytesIO):
                return self._sink.getvalue()
            return self._sink.take()

    def close(self) -> None:
        # Asked first, then tried: a write that is ending either sees the request after
        # it lets go of the lock, or has let go already and this call takes the lock.
        self._close_requested = True
        self._close_if_idle()

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        try:
            with self._in_use:
                if self._close_requested:
                    raise RuntimeError(f"{self.format} encoder closed")
                self._check_open()
                yield
        finally:
            if self._close_requested:
                self._close_if_idle()

    def _close_if_idle(self) -> None:
        if not self._in_use.acquire(blocking=False):
            return  # the write in progress closes it when it ends (see _using)
        try:
            if self._container is None:
                return  # finalized, or closed already
            self._done = True
            self._pending = np.zeros(0, dtype=np.float32)
            # The stream is abandoned; a half-written trailer does not matter.
            with contextlib.suppress(av.FFmpegError):
                self._release()
        finally:
            self._in_use.release()

    def _release(self) -> None:
        # Closed, then dropped: a request's cycles (a cancelled task's traceback) may keep
        # this object until a full collection, but not FFmpeg's contexts with it.
        container, self._container, self._stream = self._container, None, None
        container.close()

    def _encode(self, chunk: npt.NDArray[np.float32]) -> None:
        if self._spec.sample_format == "s16":
            data: npt.NDArray[Any] = _to_int16(chunk)
        else:
            data = chunk
        frame = av.AudioFrame.from_ndarray(
            data.reshape(1, -1), format=self._spec.sample_format, layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += len(chunk)
        self._container.mux(self._stream.encode(frame))

    def _take(self) -> bytes:
        if isinstance(self._sink, _ByteSink):
            return self._sink.take()
        return b""
