"""The process-wide synthesis objects, built once at start-up and read by every request.

`app.main`'s lifespan builds one `Gateway` and puts it on ``app.state``; the API
reads it only through `app.api.deps`. Everything a route needs beyond its own
request is here, so no route reaches into another object's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from app.audio.reference import ReferenceLimits
from app.codec.service import CodecService
from app.config import Settings
from app.engine.base import TokenEngine
from app.engine.http import HttpCompletionsEngine
from app.protocol import SpeechRequest
from app.service.cloning import VoiceReference, encode_reference
from app.service.jobs import JobBuilder
from app.service.speech import SpeechPipeline, SynthesisJob
from app.service.voice_store import OPEN, VoiceAccess, VoiceStore
from app.service.voices import Voices


@dataclass(frozen=True)
class Readiness:
    codec: bool
    """The codec is loaded and its worker thread runs."""
    backend: bool
    """At least one token backend answers."""
    replicas: dict[str, str] | None = None
    """Each backend replica's circuit state (closed: in rotation), for HTTP backends."""

    @property
    def ready(self) -> bool:
        return self.codec and self.backend


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
        """The job of a speech request: checked first, then its voice looked up among
        those `access` may use."""
        self.jobs.check_speech(req)
        voice = await self.voices.resolve(req.voice, access)
        return self.jobs.speech(req, voice)

    async def reference(self, clip: BinaryIO | bytes, text: str) -> VoiceReference:
        """A cloning reference of an uploaded clip and its (checked) transcript."""
        return await encode_reference(clip, text, self.reference_limits, self.codec)

    async def readiness(self) -> Readiness:
        codec = self.codec.stats().running
        replicas = None
        if isinstance(self.engine, HttpCompletionsEngine):
            replicas = {h.url: str(h.state) for h in self.engine.replica_health()}
        return Readiness(codec=codec, backend=await self.engine.ready(), replicas=replicas)
