"""One synthesis request's pipeline, as async iterators handed from stage to stage.

tokens (engine) -> frames (FrameAssembler) -> context windows (WindowPlanner) ->
decoder service -> seam joins -> tempo -> streaming encoder -> bytes.

A `SpeechStream` is primed up to its first encoded bytes before the API commits
a response, so every failure up to that point still becomes a proper HTTP status.
Closing the stream closes every stage below it, down to the backend request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import numpy as np

from app.audio.encoders import StreamingEncoder, create_encoder
from app.audio.joins import SegmentJoiner
from app.audio.pcm import SAMPLE_RATE
from app.audio.schedule import Playback
from app.audio.speed import TempoStream
from app.codec.service import CodecService
from app.engine.base import GenerationParams, Prompt, TokenEngine
from app.errors import BackendError, Overloaded
from app.service.decoding import PipelineConfig, StreamDecoder
from app.service.segmented import ExtraSlot, joined_pcm

log = logging.getLogger(__name__)


@dataclass
class SynthesisStats:
    """What one synthesis did; read by the API for headers, usage and logs."""

    started: float = field(default_factory=time.perf_counter)
    first_audio: float | None = None
    finished: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    frames: int = 0
    audio_samples: int = 0
    output_samples: int = 0
    invalid_tokens: int = 0
    non_audio_tokens: int = 0
    finish_reason: str | None = None
    """Of the last segment."""
    segments: int = 0
    """Segments whose generation finished."""
    truncated_segments: int = 0
    """Segments that ended on the token budget (``length``) rather than the model's stop."""

    @property
    def ttfa_ms(self) -> float | None:
        if self.first_audio is None:
            return None
        return (self.first_audio - self.started) * 1000.0

    @property
    def audio_seconds(self) -> float:
        """Seconds decoded from the model's frames (before any tempo change)."""
        return self.audio_samples / SAMPLE_RATE

    @property
    def output_seconds(self) -> float:
        """Seconds the client receives (after a tempo change)."""
        return self.output_samples / SAMPLE_RATE


@dataclass(frozen=True)
class Segment:
    """One generation of a response: its text, prompt and sampling."""

    text: str
    prompt: Prompt
    params: GenerationParams


@dataclass(frozen=True)
class SynthesisJob:
    segments: tuple[Segment, ...]
    """Spoken in order, as one continuous stream."""
    response_format: str
    speed: float = 1.0
    streaming: bool = True


class SpeechPipeline:
    """Builds `SpeechStream`s; holds the process-wide engine and decoder service."""

    def __init__(self, engine: TokenEngine, codec: CodecService, config: PipelineConfig) -> None:
        self.engine = engine
        self.codec = codec
        self.config = config
        self._stream_ids = itertools.count(1)

    def check_capacity(self) -> None:
        """Refuse before anything is promised: with a full codec queue a stream's windows
        would be refused later, mid-audio."""
        if not self.codec.has_capacity():
            raise Overloaded(
                "The audio decoder is at capacity; retry shortly.", headers={"Retry-After": "1"}
            )

    def open(
        self,
        job: SynthesisJob,
        *,
        extra_slot: ExtraSlot | None = None,
        encoder: Callable[[], StreamingEncoder] | None = None,
    ) -> SpeechStream:
        """``extra_slot``: takes a stream slot for a segment generated ahead, if one is free;
        ``encoder``: builds the stream's encoder (default: the job's response_format)."""
        self.check_capacity()
        return SpeechStream(self, job, extra_slot, encoder)

    def pcm(
        self, job: SynthesisJob, stats: SynthesisStats, extra_slot: ExtraSlot | None = None
    ) -> AsyncGenerator[np.ndarray, None]:
        """Decoded PCM chunks (float32, mono, 24 kHz) in order, every frame exactly once;
        segments joined with the configured pause."""
        cfg = self.config
        playback = Playback(job.speed)
        return joined_pcm(
            len(job.segments),
            lambda k: self.segment_pcm(job.segments[k], stats, playback),
            SegmentJoiner(cfg.segment_fade_samples, cfg.segment_pause_samples),
            lookahead=cfg.segment_lookahead,
            extra_slot=extra_slot,
        )

    async def segment_pcm(
        self, segment: Segment, stats: SynthesisStats, playback: Playback
    ) -> AsyncGenerator[np.ndarray, None]:
        """One generation's PCM; its counts are added to ``stats`` as it goes."""
        decoder = StreamDecoder(
            self.codec, self.config, stream=next(self._stream_ids), playback=playback
        )
        counted = 0
        finish: str | None = None
        wake = _ListenerWake(decoder)
        stream = self.engine.stream(segment.prompt, segment.params, wake=wake)
        async with aclosing(stream) as tokens:
            async for batch in tokens:
                if batch.tick:  # the listener would run dry: send what can be sent
                    wake.passed()
                else:
                    stats.completion_tokens += len(batch.token_ids)
                    counted += len(batch.token_ids)
                    if batch.usage is not None:
                        # The backend's own counts (the stop token included) are what it billed.
                        stats.prompt_tokens += batch.usage.prompt_tokens
                        stats.completion_tokens += batch.usage.completion_tokens - counted
                    if batch.finish_reason is not None:
                        finish = batch.finish_reason
                    if not decoder.feed(batch.token_ids):
                        continue
                # Planned and decoded inline: this runs about once per frame of every stream.
                for window in decoder.plan():
                    out = await decoder.decode(window)
                    if out.size:
                        yield out
        assembler = decoder.assembler
        stats.invalid_tokens += assembler.invalid
        stats.non_audio_tokens += assembler.non_audio
        stats.frames += decoder.frames
        stats.segments += 1
        stats.finish_reason = finish
        if finish == "length":
            stats.truncated_segments += 1
            log.warning(
                "a segment ended on its token budget (%d tokens): its text may be cut: %.80r",
                segment.params.max_tokens,
                segment.text,
            )
        if decoder.frames == 0:
            raise BackendError(
                "The model produced no audio frames "
                f"({counted} tokens, {assembler.invalid} invalid).",
                code="no_audio",
                # The same text and sampling would most likely fail alike.
                retryable=False,
            )
        async with aclosing(decoder.chunks(final=True)) as chunks:
            async for out in chunks:
                yield out


class _ListenerWake:
    """The engine's `WakeAt` for one segment: the decoder's deadline (frames are held back
    and the listener would run dry by then), unless that deadline already passed with
    nothing to send, which would only wake the stream again at once."""

    def __init__(self, decoder: StreamDecoder) -> None:
        self._decoder = decoder
        self._asked: float | None = None
        self._missed: float | None = None

    def __call__(self) -> float | None:
        deadline = self._decoder.deadline()
        self._asked = None if deadline == self._missed else deadline
        return self._asked

    def passed(self) -> None:
        """The engine ticked: the deadline it was given has passed."""
        self._missed = self._asked


class SpeechStream:
    """One synthesis as encoded bytes; `prime()` runs it up to the first bytes."""

    def __init__(
        self,
        pipeline: SpeechPipeline,
        job: SynthesisJob,
        extra_slot: ExtraSlot | None = None,
        encoder: Callable[[], StreamingEncoder] | None = None,
    ) -> None:
        self.job = job
        self.stats = SynthesisStats()
        self._pipeline = pipeline
        self._extra_slot = extra_slot
        self._new_encoder = encoder
        self._gen = self._encoded()
        self._first: bytes | None = None
        self.error: Exception | None = None
        """The failure that ended the stream, if one did (for metrics and logs)."""

    async def prime(self) -> None:
        """Run until the first encoded bytes exist; errors raised here are pre-commit."""
        try:
            self._first = await anext(self._gen)
        except StopAsyncIteration:
            self._first = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._first is None:
            await self.prime()
        assert self._first is not None
        if self._first:
            yield self._first
        async for data in self._gen:
            yield data

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def _encoded(self) -> AsyncGenerator[bytes, None]:
        job = self.job
        if self._new_encoder is not None:
            encoder = self._new_encoder()
        else:
            encoder = create_encoder(job.response_format, streaming=job.streaming)
        try:
            async for data in self._encode(encoder):
                yield data
        except Exception as exc:
            self.error = exc
            raise
        finally:
            encoder.close()

    async def _encode(self, encoder: StreamingEncoder) -> AsyncGenerator[bytes, None]:
        job, stats = self.job, self.stats
        tempo = TempoStream(job.speed) if job.speed != 1.0 else None
        async with aclosing(self._pipeline.pcm(job, stats, self._extra_slot)) as chunks:
            async for pcm in chunks:
                if stats.first_audio is None:
                    stats.first_audio = time.perf_counter()
                stats.audio_samples += pcm.size
                if tempo is not None:
                    pcm = tempo.process(pcm)
                stats.output_samples += pcm.size
                data = await write_pcm(encoder, pcm) if pcm.size else b""
                if data:
                    yield data
        tail = b""
        if tempo is not None:
            rest = tempo.flush()
            stats.output_samples += rest.size
            if rest.size:
                tail += await write_pcm(encoder, rest)
        tail += await finalize(encoder)
        stats.finished = time.perf_counter()
        log.info(
            "synthesis done: %d frames, %.2f s audio, ttfa %.0f ms, finish %s, invalid %d",
            stats.frames,
            stats.audio_seconds,
            stats.ttfa_ms or -1.0,
            stats.finish_reason,
            stats.invalid_tokens,
        )
        if tail:
            yield tail


async def write_pcm(encoder: StreamingEncoder, pcm: np.ndarray) -> bytes:
    # Encoding with a codec is CPU work: keep it off the event loop.
    return await asyncio.to_thread(encoder.write, pcm) if encoder.blocking else encoder.write(pcm)


async def finalize(encoder: StreamingEncoder) -> bytes:
    return await asyncio.to_thread(encoder.finalize) if encoder.blocking else encoder.finalize()
