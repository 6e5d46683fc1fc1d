"""The process-wide synthesis objects, built once at start-up and read by every request.

`app.main`'s lifespan builds one `Gateway` and puts it on ``app.state``; the API
reads it only through `app.api.deps`. Everything a route needs beyond its own
request is here, so no route reaches into another object's internals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import BinaryIO

from app.audio.reference import ReferenceLimits
from app.codec.service import CodecService
from app.config import Settings
from app.engine.base import TokenEngine
from app.engine.http import HttpCompletionsEngine
from app.errors import InvalidRequest
from app.protocol import SpeechRequest
from app.service.cloning import VoiceReference, encode_reference
from app.service.jobs import JobBuilder
from app.service.speech import SpeechPipeline, SynthesisJob
from app.service.voice_store import OPEN, VoiceAccess, VoiceStore
from app.service.voices import Voices
from app.text.frontend import SpokenText, prepare_text


@dataclass(frozen=True)
class Readiness:
    codec: bool
    """The codec is loaded and its worker thread runs."""
    backend: bool
    """At least one token backend answers."""
    replicas: dict[str, str] | None = None
    """Each backend replica's circuit state (closed: in rotation), for HTTP backends."""
    warming: bool = False
    """The decoder is still capturing graphs or compiling (`CodecService.warming`)."""

    @property
    def ready(self) -> bool:
        return self.codec and self.backend and not self.warming


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    engine: TokenEngine
    codec: CodecService
    pipeline: SpeechPipeline
    jobs: JobBuilder
    voices: Voices

    @property
    def store(self) -> VoiceStore:
        return self.voices.store

    @property
    def reference_limits(self) -> ReferenceLimits:
        s = self.settings
        return ReferenceLimits(s.min_reference_seconds, s.max_reference_seconds)

    async def speech_job(self, req: SpeechRequest, access: VoiceAccess = OPEN) -> SynthesisJob:
        """The job of a speech request: checked first, then its text prepared and its
        voice looked up among those `access` may use."""
        self.jobs.check_speech(req)
        texts = await self.spoken(req.input, normalize=req.normalize)
        voice = await self.voices.resolve(req.voice, access)
        return self.jobs.speech(req, voice, texts)

    async def spoken(self, text: str, *, normalize: bool, param: str = "input") -> list[str]:
        """The segments ``text`` is spoken in (normalized unless either the request or
        NORMALIZE_TEXT says not to); a 400 when nothing speakable is left."""
        prepared = await asyncio.to_thread(self.prepare, text, normalize=normalize)
        if not prepared.segments:
            raise InvalidRequest(
                f"{param} has nothing to speak once markup and symbols are read.", param=param
            )
        return prepared.segments

    def prepare(self, text: str, *, normalize: bool, short_first: bool = True) -> SpokenText:
        """What the model will be asked to say (pure CPU work: run it in a thread).
        ``short_first=False``: text that continues a stream whose audio already plays needs
        no short first segment."""
        s = self.settings
        return prepare_text(
            text,
            normalize=normalize and s.normalize_text,
            max_chars=s.segment_max_chars,
            first_max_chars=s.segment_first_max_chars if short_first else s.segment_max_chars,
        )

    async def reference(self, clip: BinaryIO | bytes, text: str) -> VoiceReference:
        """A cloning reference of an uploaded clip and its (checked) transcript."""
        return await encode_reference(clip, text, self.reference_limits, self.codec)

    async def readiness(self) -> Readiness:
        codec = self.codec.stats().running
        replicas = None
        if isinstance(self.engine, HttpCompletionsEngine):
            replicas = {h.url: str(h.state) for h in self.engine.replica_health()}
        return Readiness(
            codec=codec,
            backend=await self.engine.ready(),
            replicas=replicas,
            warming=self.codec.warming,
        )
