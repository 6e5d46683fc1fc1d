"""One stream's token ids to exact PCM chunks: frames, the chunk schedule, decode, seams.

`StreamDecoder` owns a synthesis' frame buffer, window planner and seam joiner. The
pipeline feeds it token batches and asks it for windows (`plan`) whenever frames arrived,
or when `deadline` says the listener would otherwise run dry while frames are held back,
and decodes each; `chunks` does both in one call for callers off the per-frame path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from app.audio.joins import SeamJoiner
from app.audio.schedule import BufferSchedule, Playback, ScheduleName, make_schedule
from app.audio.windows import Window, WindowPlanner
from app.codec.request import DecodeRequest
from app.codec.service import CodecService
from app.codec.tokens import FrameAssembler, FrameBuffer, InvalidPolicy

Pcm = np.ndarray


@dataclass(frozen=True)
class PipelineConfig:
    context_frames: int = 3
    first_frames: int = 2
    max_frames: int = 16
    schedule: ScheduleName = "buffer"
    crossfade_samples: int = 0
    invalid_token_policy: InvalidPolicy = "resync"
    max_invalid_tokens: int | None = None
    segment_lookahead: int = 1
    """Segments of a long input generated ahead of the one streaming."""
    segment_pause_samples: int = 0
    segment_fade_samples: int = 0


class StreamDecoder:
    def __init__(
        self, codec: CodecService, config: PipelineConfig, *, stream: int, playback: Playback
    ) -> None:
        """``playback``: the listener's timeline, shared by every segment of the response."""
        self._codec = codec
        self._pad = config.crossfade_samples
        self._stream = stream
        self.assembler = FrameAssembler(
            policy=config.invalid_token_policy, max_invalid=config.max_invalid_tokens
        )
        self._schedule = make_schedule(
            config.schedule, config.first_frames, config.max_frames, playback=playback
        )
        self._planner = WindowPlanner(
            context=config.context_frames,
            max_frames=config.max_frames,
            schedule=self._schedule,
        )
        self._joiner = SeamJoiner(config.crossfade_samples)
        self._frames = FrameBuffer()
        self._first = True

    @property
    def frames(self) -> int:
        return len(self._frames)

    def feed(self, token_ids: Sequence[int]) -> int:
        """Take token ids; returns how many frames they completed."""
        new = self.assembler.feed(token_ids)
        if len(new):
            self._frames.extend(new)
        return len(new)

    def deadline(self) -> float | None:
        """When (`time.perf_counter`) to ask for chunks again though no frame arrived."""
        self._expect_hold()
        return self._planner.deadline()

    def plan(self, *, final: bool = False) -> list[Window]:
        """The windows the schedule sends now (``final``: everything left), in order."""
        self._expect_hold()
        return self._planner.plan(len(self._frames), final, now=perf_counter())

    def _expect_hold(self) -> None:
        if isinstance(self._schedule, BufferSchedule):
            self._schedule.hold = self._codec.encode_hold

    async def decode(self, window: Window) -> Pcm:
        """One planned window's samples past its seam (empty while the joiner holds them)."""
        request = DecodeRequest.of(
            self._frames.frames,
            window,
            # The joiner crossfades into the context samples around each seam.
            pad=self._pad,
            stream=self._stream,
            first=self._first,
        )
        started = perf_counter()
        pcm = await self._codec.decode(request)
        if isinstance(self._schedule, BufferSchedule):
            self._schedule.observe_decode(perf_counter() - started)
        self._first = False
        return self._joiner.push(window, pcm)

    def finish(self) -> Pcm:
        """The joiner's last samples, once the final windows are decoded."""
        return self._joiner.finish()

    async def chunks(self, *, final: bool = False) -> AsyncGenerator[Pcm, None]:
        """`plan` decoded, non-empty chunks only (``final``: and the joiner's tail)."""
        for window in self.plan(final=final):
            out = await self.decode(window)
            if out.size:
                yield out
        if final:
            tail = self.finish()
            if tail.size:
                yield tail
