"""An incremental synthesis session: text arrives in pieces, audio leaves as it is made.

The protocol-neutral core of the WebSocket surfaces (app/api/ws_native.py, the Deepgram
`/v1/speak`). Text goes into a `SentenceBuffer`; each sentence it releases is prepared
(normalized, segmented) and fed, segment by segment, into one `feed_pcm` stream: exact
decode, generated ahead, joined with fades and pauses, through the tempo filter and the
session's encoder, exactly as an HTTP response is made. All segments share one
`Playback`, so chunk sizes follow what the listener really holds.

- ``flush``: what is buffered is spoken now; its audio ends an *utterance*: the tempo filter
  and encoder are finished (a compressed format's last frame, a resampler's delay) and
  `Flushed` follows the last byte. The next text starts a new utterance (a new encoder).
- ``clear``: the generations in flight are cancelled (their backend requests closed),
  queued text and audio dropped, and `Cleared` is the next event.
- ``finish``: like a flush, then `Finished`; nothing more is taken.

Events wait in a bounded queue: a consumer that stops reading stops the synthesis
(and so the backend stream) behind it, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from app.audio.encoders import StreamingEncoder
from app.audio.joins import SegmentJoiner
from app.audio.schedule import Playback
from app.errors import InvalidRequest
from app.protocol import SynthesisOptions
from app.service.gateway import Gateway
from app.service.segmented import (
    Boundary,
    ExtraSlot,
    SegmentAudio,
    SegmentEnd,
    SegmentFeed,
    feed_pcm,
)
from app.service.speech import Segment, SynthesisStats
from app.service.utterance import Utterance
from app.service.voices import Voice
from app.text.incremental import SentenceBuffer

log = logging.getLogger(__name__)

EVENT_QUEUE = 8
"""Events made ahead of the consumer (audio chunks are up to CHUNK_MAX_FRAMES long)."""


@dataclass(eq=False)
class _Entry:
    index: int
    segment: Segment
    stats: SynthesisStats = field(default_factory=SynthesisStats)
    """``started``: when its text was complete; ``first_audio``: its first bytes queued."""


@dataclass(frozen=True)
class Audio:
    segment: int
    data: bytes


@dataclass(frozen=True)
class SegmentDone:
    segment: int
    text: str
    stats: SynthesisStats
    last: bool
    """It ended an utterance (a flush or the session's end came right after it)."""


@dataclass(frozen=True)
class Flushed:
    flush: int


@dataclass(frozen=True)
class Cleared:
    pass


@dataclass(frozen=True)
class Finished:
    pass


@dataclass(frozen=True)
class Failed:
    error: Exception


SessionEvent = Audio | SegmentDone | Flushed | Cleared | Finished | Failed
_FINAL = -1


class SynthesisSession:
    def __init__(
        self,
        gateway: Gateway,
        voice: Voice,
        options: SynthesisOptions,
        encoder: Callable[[], StreamingEncoder],
        *,
        max_pending_chars: int,
        extra_slot: ExtraSlot | None = None,
        observe: Callable[[SynthesisStats, Exception | None], None] | None = None,
    ) -> None:
        """``observe``: told of each utterance's totals when it ends, fails or is cleared."""
        self._gateway = gateway
        self.voice = voice
        self.options = options
        self._new_encoder = encoder
        self._max_pending = max_pending_chars
        self._extra_slot = extra_slot
        self._observe = observe
        self._buffer = SentenceBuffer(gateway.settings.segment_max_chars)
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue(EVENT_QUEUE)
        self._playback = Playback(options.speed)
        self._indexes = itertools.count()
        self._flushes = itertools.count()
        self._feed: SegmentFeed[_Entry] | None = None
        self._task: asyncio.Task[None] | None = None
        self._queued: dict[int, int] = {}
        """Segments fed and not yet done: their characters."""
        self.finishing = False

    @property
    def busy(self) -> bool:
        """Whether anything is being or waits to be spoken or sent."""
        return bool(self._queued) or not self._events.empty()

    @property
    def pending_chars(self) -> int:
        return len(self._buffer) + sum(self._queued.values())

    async def reconfigure(
        self, voice: Voice, options: SynthesisOptions, encoder: Callable[[], StreamingEncoder]
    ) -> None:
        """New voice, sampling or format for what comes next; only while nothing is pending."""
        if self.busy or self.pending_chars or self.finishing:
            raise InvalidRequest(
                "The session can change only while nothing waits to be spoken; "
                "flush (or clear) and wait for its audio first.",
                code="session_busy",
            )
        await self._stop()
        self.voice, self.options, self._new_encoder = voice, options, encoder
        self._playback = Playback(options.speed)

    async def next_event(self) -> SessionEvent:
        return await self._events.get()

    async def append(self, text: str) -> None:
        self._refuse_if_finishing()
        if self.pending_chars + len(text) > self._max_pending:
            raise InvalidRequest(
                f"More than {self._max_pending} characters would wait to be spoken; "
                "flush, or send text no faster than it is spoken.",
                param="text",
                code="input_buffer_full",
            )
        released = self._buffer.append(text)
        if released:
            await self._speak(released)

    async def flush(self) -> int:
        """Speak what is buffered; returns the id its `Flushed` event will carry."""
        self._refuse_if_finishing()
        await self._speak(self._buffer.flush())
        key = next(self._flushes)
        self._epoch().put(Boundary(key))
        return key

    async def finish(self) -> None:
        """Speak what is buffered, then `Finished`."""
        if self.finishing:
            return
        await self._speak(self._buffer.flush())
        self.finishing = True
        feed = self._epoch()
        feed.put(Boundary(_FINAL))
        feed.close()

    async def clear(self) -> None:
        """Cancel every generation, drop queued text and audio; `Cleared` comes next."""
        self._buffer.clear()
        await self._stop()
        # The client drops the audio it holds: the next chunks must not wait on it.
        self._playback = Playback(self.options.speed)
        while not self._events.empty():
            self._events.get_nowait()
        self._events.put_nowait(Cleared())
        if self.finishing:  # the end was asked for already: it still comes
            feed = self._epoch()
            feed.put(Boundary(_FINAL))
            feed.close()

    async def aclose(self) -> None:
        await self._stop()

    def _refuse_if_finishing(self) -> None:
        if self.finishing:
            raise InvalidRequest(
                "The session is finishing: it takes no more text.", code="session_finishing"
            )

    async def _stop(self) -> None:
        task, self._task, self._feed = self._task, None, None
        self._queued.clear()
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _epoch(self) -> SegmentFeed[_Entry]:
        if self._feed is None or self._task is None or self._task.done():
            self._feed = SegmentFeed()
            self._task = asyncio.create_task(self._run(self._feed))
        return self._feed

    async def _speak(self, text: str) -> None:
        if not text:
            return
        # While audio plays already, the next segments need not be short.
        short_first = not self._queued
        prepared = await asyncio.to_thread(
            self._gateway.prepare, text, normalize=self.options.normalize, short_first=short_first
        )
        if not prepared.segments:
            return  # markup or emoji only: nothing to say
        job = self._gateway.jobs.speech(self.options, self.voice, prepared.segments)
        feed = self._epoch()
        for segment in job.segments:
            entry = _Entry(next(self._indexes), segment)
            self._queued[entry.index] = len(segment.text)
            feed.put(entry)

    async def _run(self, feed: SegmentFeed[_Entry]) -> None:
        pipeline = self._gateway.pipeline
        cfg = pipeline.config
        utterance = Utterance(self._new_encoder, self.options.speed)
        events = feed_pcm(
            feed,
            lambda entry: pipeline.segment_pcm(entry.segment, entry.stats, self._playback),
            lambda: SegmentJoiner(cfg.segment_fade_samples, cfg.segment_pause_samples),
            lookahead=cfg.segment_lookahead,
            extra_slot=self._extra_slot,
        )
        try:
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, SegmentAudio):
                        entry = event.segment
                        data = await utterance.write(entry.index, entry.stats, event.pcm)
                        if data:
                            await self._events.put(Audio(entry.index, data))
                    elif isinstance(event, SegmentEnd):
                        entry = event.segment
                        if event.last:
                            await self._end_utterance(utterance, entry.index)
                        entry.stats.finished = time.perf_counter()
                        utterance.absorb(entry.stats)
                        self._queued.pop(entry.index, None)
                        await self._events.put(
                            SegmentDone(entry.index, entry.segment.text, entry.stats, event.last)
                        )
                    else:
                        await self._end_utterance(utterance, None)
                        key = event.key
                        assert isinstance(key, int)
                        await self._events.put(Finished() if key == _FINAL else Flushed(key))
        except asyncio.CancelledError:
            self._record(utterance, None, cancelled=True)
            raise
        except Exception as exc:
            log.warning("session synthesis failed: %s", exc)
            self._record(utterance, exc)
            self._queued.clear()
            await self._events.put(Failed(exc))
        finally:
            utterance.close()

    async def _end_utterance(self, utterance: Utterance, segment: int | None) -> None:
        tail = await utterance.end()
        owner = segment if segment is not None else utterance.last_segment
        if tail and owner is not None:
            await self._events.put(Audio(owner, tail))
        self._record(utterance, None)

    def _record(
        self, utterance: Utterance, error: Exception | None, *, cancelled: bool = False
    ) -> None:
        stats = utterance.take_stats()
        if stats is not None and self._observe is not None:
            if cancelled or error is not None:
                stats.finished = None  # counted as cancelled (or failed), not as done
            self._observe(stats, error)
