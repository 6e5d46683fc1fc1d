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
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

import numpy as np

from app.audio.encoders import StreamingEncoder, create_encoder
from app.audio.joins import SeamJoiner
from app.audio.pcm import SAMPLE_RATE
from app.audio.speed import TempoStream
from app.audio.windows import WindowPlanner
from app.codec.request import DecodeRequest
from app.codec.service import CodecService
from app.codec.tokens import FrameAssembler, InvalidPolicy
from app.engine.base import GenerationParams, Prompt, TokenEngine
from app.errors import BackendError, Overloaded
from app.vocab import TOKENS_PER_FRAME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    context_frames: int = 3
    first_frames: int = 1
    max_frames: int = 16
    crossfade_samples: int = 0
    invalid_token_policy: InvalidPolicy = "resync"
    max_invalid_tokens: int | None = None


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
class SynthesisJob:
    prompt: Prompt
    params: GenerationParams
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

    def open(self, job: SynthesisJob) -> SpeechStream:
        self.check_capacity()
        return SpeechStream(self, job)

    async def pcm(
        self, job: SynthesisJob, stats: SynthesisStats
    ) -> AsyncGenerator[np.ndarray, None]:
        """Decoded PCM chunks (float32, mono, 24 kHz) in order, every frame exactly once."""
        cfg = self.config
        assembler = FrameAssembler(
            policy=cfg.invalid_token_policy,
            max_invalid=cfg.max_invalid_tokens,
        )
        planner = WindowPlanner(
            context=cfg.context_frames, first_frames=cfg.first_frames, max_frames=cfg.max_frames
        )
        joiner = SeamJoiner(cfg.crossfade_samples)
        frames = np.zeros((0, TOKENS_PER_FRAME), dtype=np.int64)
        stream_id = next(self._stream_ids)
        first = True

        async def emit(final: bool) -> AsyncGenerator[np.ndarray, None]:
            nonlocal first
            for window in planner.plan(len(frames), final):
                request = DecodeRequest.of(
                    frames,
                    window,
                    # The joiner crossfades into the context samples around each seam.
                    pad=cfg.crossfade_samples,
                    stream=stream_id,
                    first=first,
                )
                pcm = await self.codec.decode(request)
                first = False
                out = joiner.push(window, pcm)
                if out.size:
                    yield out

        async with aclosing(self.engine.stream(job.prompt, job.params)) as tokens:
            async for batch in tokens:
                stats.completion_tokens += len(batch.token_ids)
                if batch.usage is not None:
                    # The backend's own counts (the stop token included) are what it billed.
                    stats.prompt_tokens = batch.usage.prompt_tokens
                    stats.completion_tokens = batch.usage.completion_tokens
                new = np.asarray(assembler.feed(batch.token_ids), dtype=np.int64)
                if batch.finish_reason is not None:
                    stats.finish_reason = batch.finish_reason
                if new.size:
                    frames = np.concatenate([frames, new.reshape(-1, TOKENS_PER_FRAME)])
                    async with aclosing(emit(final=False)) as chunks:
                        async for out in chunks:
                            yield out
        stats.invalid_tokens = assembler.invalid
        stats.non_audio_tokens = assembler.non_audio
        stats.frames = len(frames)
        if len(frames) == 0:
            raise BackendError(
                "The model produced no audio frames "
                f"({stats.completion_tokens} tokens, {assembler.invalid} invalid).",
                code="no_audio",
            )
        async with aclosing(emit(final=True)) as chunks:
            async for out in chunks:
                yield out
        tail = joiner.finish()
        if tail.size:
            yield tail


class SpeechStream:
    """One synthesis as encoded bytes; `prime()` runs it up to the first bytes."""

    def __init__(self, pipeline: SpeechPipeline, job: SynthesisJob) -> None:
        self.job = job
        self.stats = SynthesisStats()
        self._pipeline = pipeline
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
        async with aclosing(self._pipeline.pcm(job, stats)) as chunks:
            async for pcm in chunks:
                if stats.first_audio is None:
                    stats.first_audio = time.perf_counter()
                stats.audio_samples += pcm.size
                if tempo is not None:
                    pcm = tempo.process(pcm)
                stats.output_samples += pcm.size
                # Encoding is CPU work: keep it off the event loop.
                data = await asyncio.to_thread(encoder.write, pcm) if pcm.size else b""
                if data:
                    yield data
        tail = b""
        if tempo is not None:
            rest = tempo.flush()
            stats.output_samples += rest.size
            if rest.size:
                tail += await asyncio.to_thread(encoder.write, rest)
        tail += await asyncio.to_thread(encoder.finalize)
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
