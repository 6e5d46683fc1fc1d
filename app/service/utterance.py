"""One utterance of a session: its tempo filter and encoder, and its totals for the metrics.

An utterance is the audio of a session's text up to a flush (app/service/session.py): one
stream in the session's format, so the tempo filter and encoder live as long as it does and
are finished at its end, sending everything they hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from app.audio.encoders import StreamingEncoder
from app.audio.speed import TempoStream
from app.service.speech import SynthesisStats, finalize, write_pcm


class Utterance:
    """The tempo filter and encoder of the utterance being spoken, and its totals."""

    def __init__(self, new_encoder: Callable[[], StreamingEncoder], speed: float) -> None:
        self._new_encoder = new_encoder
        self._speed = speed
        self._encoder: StreamingEncoder | None = None
        self._tempo: TempoStream | None = None
        self._stats: SynthesisStats | None = None
        self.last_segment: int | None = None

    async def write(self, segment: int, stats: SynthesisStats, pcm: np.ndarray) -> bytes:
        if self._encoder is None:
            self._encoder = self._new_encoder()
            self._tempo = TempoStream(self._speed) if self._speed != 1.0 else None
        if stats.first_audio is None:
            stats.first_audio = time.perf_counter()
        stats.audio_samples += pcm.size
        if self._tempo is not None:
            pcm = self._tempo.process(pcm)
        stats.output_samples += pcm.size
        self.last_segment = segment
        return await write_pcm(self._encoder, pcm) if pcm.size else b""

    async def end(self) -> bytes:
        """The utterance's last bytes; the next write starts a new encoder."""
        encoder, tempo = self._encoder, self._tempo
        self._encoder = self._tempo = None
        if encoder is None:
            return b""
        tail = b""
        if tempo is not None:
            rest = tempo.flush()
            if self._stats is not None:
                self._stats.output_samples += rest.size
            if rest.size:
                tail += await write_pcm(encoder, rest)
        return tail + await finalize(encoder)

    def absorb(self, part: SynthesisStats) -> None:
        total = self._stats
        if total is None:
            total = self._stats = SynthesisStats(started=part.started)
            total.first_audio = part.first_audio
        for name in (
            "prompt_tokens", "completion_tokens", "frames", "audio_samples", "output_samples",
            "invalid_tokens", "non_audio_tokens", "segments", "truncated_segments",
        ):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.finish_reason = part.finish_reason
        total.finished = part.finished

    def take_stats(self) -> SynthesisStats | None:
        stats, self._stats = self._stats, None
        return stats

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None
