"""`/v1/audio/speech/stream`: the gateway's own WebSocket protocol (docs/websocket.md).

Client: `session.update`, `input_text.append`, `input_text.flush`, `input_text.clear`,
`input_text.done` (and `keepalive`). Server: `session.ready`, audio (binary frames with an
8-byte header, or `audio.delta` events), `segment.done`, `input_text.flushed`,
`input_text.cleared`, `keepalive`, `error`, `session.done`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid
from functools import partial
from typing import Any, Final, Literal

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.api import deps
from app.api.validation import describe_validation
from app.api.websocket import CloseSession, Sender, close_code
from app.api.ws_serve import open_session, serve
from app.audio.encoders import create_encoder
from app.audio.formats import ResponseFormat
from app.audio.pcm import SAMPLE_RATE
from app.audio.speed import MAX_SPEED, MIN_SPEED
from app.config import Settings
from app.errors import GatewayError, InvalidRequest
from app.protocol import SynthesisOptions, Text, VoiceRef, voice_text
from app.service.gateway import Gateway
from app.service.session import (
    Audio,
    Cleared,
    Failed,
    Finished,
    Flushed,
    SegmentDone,
    SessionEvent,
    SynthesisSession,
)

router = APIRouter(tags=["speech"])

AUDIO_HEADER: Final = struct.Struct("<II")
"""Each binary frame starts with two little-endian uint32: segment, then sequence."""
_FATAL_CODES: Final = frozenset({"input_buffer_full"})


class SessionUpdate(BaseModel):
    """How the session speaks: the fields of `/v1/audio/speech` that apply to a stream."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["session.update"]
    voice: str | VoiceRef | None = None
    response_format: ResponseFormat = "pcm"
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=2.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    normalize: bool = True
    audio: Literal["binary", "base64"] = "binary"

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_text(cls, value: object) -> object:
        return voice_text(value)

    def options(self) -> SynthesisOptions:
        return SynthesisOptions.model_validate(self.model_dump(exclude={"type", "voice", "audio"}))


class TextAppend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["input_text.append"]
    text: Text


_BARE: Final = {"input_text.flush", "input_text.clear", "input_text.done", "keepalive"}


def _error(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": error.envelope()["error"]}


class NativeSession:
    """One client of `/v1/audio/speech/stream` (a `SessionHandler`)."""

    def __init__(self, websocket: WebSocket, gateway: Gateway, settings: Settings) -> None:
        self.sender = Sender(websocket, settings.ws_send_timeout_seconds)
        self._websocket = websocket
        self._gateway = gateway
        self._settings = settings
        self.id = f"sess_{uuid.uuid4().hex}"
        self._session: SynthesisSession | None = None
        self._configured = asyncio.Event()
        self._update = SessionUpdate(type="session.update")
        self._sequence = 0
        self._usage = [0, 0]

    @property
    def busy(self) -> bool:
        return self._session is not None and self._session.busy

    def keepalive(self) -> dict[str, Any]:
        return {"type": "keepalive"}

    def error_message(self, error: GatewayError) -> dict[str, Any]:
        return _error(error)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()

    async def on_message(self, text: str | None, data: bytes | None) -> None:
        try:
            await self._handle(text)
        except GatewayError as exc:
            if exc.code in _FATAL_CODES or not isinstance(exc, InvalidRequest):
                raise CloseSession(close_code(exc), exc.code or "", exc) from exc
            await self.sender.json(_error(exc))

    async def _handle(self, text: str | None) -> None:
        if text is None:
            raise InvalidRequest(
                "Binary messages are not accepted: send JSON text messages.",
                code="invalid_message",
            )
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise InvalidRequest(f"Not JSON: {exc}.", code="invalid_message") from exc
        kind = message.get("type") if isinstance(message, dict) else None
        try:
            if kind == "session.update":
                await self._configure(SessionUpdate.model_validate(message))
            elif kind == "input_text.append":
                append = TextAppend.model_validate(message)
                await (await self._ready()).append(append.text)
            elif kind in _BARE:
                if set(message) != {"type"}:
                    raise InvalidRequest(f"{kind} takes no fields.", code="invalid_message")
                await self._control(kind)
            else:
                known = ", ".join(["session.update", "input_text.append", *sorted(_BARE)])
                raise InvalidRequest(
                    f"Unknown message type {kind!r}; expected one of: {known}.",
                    param="type",
                    code="unknown_message_type",
                )
        except ValidationError as exc:
            message_text, param, code = describe_validation(exc.errors())
            raise InvalidRequest(message_text, param=param, code=code) from exc

    async def _control(self, kind: str) -> None:
        if kind == "keepalive":
            return
        session = await self._ready()
        if kind == "input_text.flush":
            await session.flush()
        elif kind == "input_text.clear":
            await session.clear()
        else:
            await session.finish()

    async def _configure(self, update: SessionUpdate) -> None:
        name = update.voice or self._settings.default_speaker
        voice = await self._gateway.voices.resolve(name, deps.voice_access(self._websocket))
        options = update.options()
        encoder = partial(create_encoder, update.response_format)
        if self._session is None:
            self._session = open_session(self._websocket, self._gateway, voice, options, encoder)
            self._configured.set()
        else:
            await self._session.reconfigure(voice, options, encoder)
        self._update = update
        await self.sender.json(
            {
                "type": "session.ready",
                "session_id": self.id,
                "voice": _voice_name(update, self._settings),
                "response_format": update.response_format,
                "sample_rate": SAMPLE_RATE,
                "speed": update.speed,
                "audio": update.audio,
            }
        )

    async def _ready(self) -> SynthesisSession:
        """The session, configured with the defaults if the client sent no session.update."""
        if self._session is None:
            await self._configure(SessionUpdate(type="session.update"))
        assert self._session is not None
        return self._session

    async def pump(self) -> None:
        await self._configured.wait()
        assert self._session is not None
        while not await self._send(await self._session.next_event()):
            pass

    async def _send(self, event: SessionEvent) -> bool:
        """Render one event; True once the session is over."""
        if isinstance(event, Audio):
            await self._audio(event)
        elif isinstance(event, SegmentDone):
            stats = event.stats
            self._usage[0] += stats.prompt_tokens
            self._usage[1] += stats.completion_tokens
            await self.sender.json(
                {
                    "type": "segment.done",
                    "segment": event.segment,
                    "text": event.text,
                    "usage": _usage(stats.prompt_tokens, stats.completion_tokens),
                    "audio_seconds": round(stats.output_seconds, 3),
                    "timings": {
                        "first_audio_ms": _ms(stats.started, stats.first_audio),
                        "done_ms": _ms(stats.started, stats.finished),
                    },
                    "finish_reason": stats.finish_reason,
                    "last": event.last,
                }
            )
        elif isinstance(event, Flushed):
            await self.sender.json({"type": "input_text.flushed", "flush": event.flush})
        elif isinstance(event, Cleared):
            await self.sender.json({"type": "input_text.cleared"})
        elif isinstance(event, Finished):
            await self.sender.json({"type": "session.done", "usage": _usage(*self._usage)})
            return True
        elif isinstance(event, Failed):
            error = event.error
            if not isinstance(error, GatewayError):
                error = GatewayError("Internal error during synthesis.", code="internal_error")
            raise CloseSession(close_code(error), error.code or "", error)
        return False

    async def _audio(self, event: Audio) -> None:
        sequence, self._sequence = self._sequence, (self._sequence + 1) % 2**32
        if self._update.audio == "binary":
            await self.sender.bytes(AUDIO_HEADER.pack(event.segment, sequence) + event.data)
            return
        await self.sender.json(
            {
                "type": "audio.delta",
                "segment": event.segment,
                "sequence": sequence,
                "audio": base64.b64encode(event.data).decode(),
            }
        )


def _voice_name(update: SessionUpdate, settings: Settings) -> str:
    voice = update.voice
    if voice is None:
        return settings.default_speaker
    return voice.id if isinstance(voice, VoiceRef) else voice


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _ms(start: float, end: float | None) -> float | None:
    return None if end is None else round((end - start) * 1000.0, 1)


@router.websocket("/v1/audio/speech/stream")
async def speech_stream(websocket: WebSocket) -> None:
    async def start(
        gateway: Gateway, settings: Settings, rid: str
    ) -> tuple[NativeSession, dict[str, str]]:
        return NativeSession(websocket, gateway, settings), {}

    await serve(websocket, "native", start)
