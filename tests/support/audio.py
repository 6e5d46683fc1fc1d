"""Read audio back with real PyAV, as a client would."""

from __future__ import annotations

import io

import av
import numpy as np
import numpy.typing as npt


def decode_audio(data: bytes, fmt: str) -> tuple[npt.NDArray[np.float32], int]:
    """Mono float32 samples and their rate."""
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0, 24_000
    chunks = []
    rate = 0
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            rate = frame.sample_rate
            array = frame.to_ndarray()
            if array.dtype == np.int16:
                array = array.astype(np.float32) / 32767.0
            chunks.append(array.reshape(-1, frame.samples).mean(axis=0).astype(np.float32))
    return np.concatenate(chunks), rate
