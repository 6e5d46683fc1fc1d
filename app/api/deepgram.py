"""Deepgram-compatible `/v1/speak`: WebSocket (`Speak`/`Flush`/`Clear`/`Close`) and HTTP POST.

pipecat's `DeepgramTTSService(base_url="ws://host:port")` and LiveKit's
`deepgram.TTS(base_url="http://host:port/v1/speak")` speak Orpheus through it unchanged
(docs/websocket.md). This module reads Deepgram's query parameters, maps `model` onto a
voice (DEEPGRAM_VOICES, or one of the gateway's own voice names) and answers in
Deepgram's shapes: a bad parameter is HTTP 400 with a `dg-error` header, before any
session starts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final, cast

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection

from app.api import deps
from app.api.deepgram_session import DeepgramSession, model_uuid
from app.api.responses import synthesis_response
from app.api.ws_serve import serve
from app.audio.pcm import SAMPLE_RATE
from app.audio.raw import Container, RawEncoder, RawEncoding
from app.audio.speed import MAX_SPEED, MIN_SPEED
from app.config import Settings
from app.errors import GatewayError, InvalidRequest
from app.protocol import SpeechRequest, SynthesisOptions, encodable
from app.service.gateway import Gateway
from app.service.voice_store import VoiceAccess

router = APIRouter(tags=["deepgram"])

RATES: Final[dict[str, tuple[int, ...]]] = {
    "linear16": (8000, 16000, 24000, 32000, 48000),
    "mulaw": (8000, 16000),
    "alaw": (8000, 16000),
}
"""Deepgram's sample rates per encoding; the first G.711 one is its default."""
_FLAGS: Final = ("true", "false")


@dataclass(frozen=True)
class SpeakParams:
    model: str
    voice: str
    """The gateway voice that `model` names."""
    encoding: RawEncoding
    sample_rate: int
    container: Container
    speed: float

    def encoder(self) -> RawEncoder:
        return RawEncoder(self.encoding, self.sample_rate, container=self.container)

    def options(self) -> SynthesisOptions:
        return SynthesisOptions(response_format="pcm", speed=self.speed)


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="INVALID_QUERY_PARAMETER")


async def speak_params(connection: HTTPConnection, gateway: Gateway, *, http: bool) -> SpeakParams:
    """The query's parameters, checked; `InvalidRequest` naming the first bad one."""
    query = connection.query_params
    settings = gateway.settings
    encoding = query.get("encoding", "linear16").lower()
    if encoding not in RATES:
        raise _bad(f"Unsupported encoding {encoding!r}: use linear16, mulaw or alaw.", "encoding")
    default_rate = SAMPLE_RATE if encoding == "linear16" else RATES[encoding][0]
    try:
        rate = int(query.get("sample_rate", default_rate))
    except ValueError:
        rate = -1
    if rate not in RATES[encoding]:
        allowed = ", ".join(str(r) for r in RATES[encoding])
        raise _bad(f"sample_rate for {encoding} must be one of {allowed}.", "sample_rate")
    container = query.get("container", "wav" if http else "none").lower()
    if container not in (("none", "wav") if http else ("none",)):
        raise _bad(
            "container must be none or wav." if http else "The WebSocket sends container none.",
            "container",
        )
    try:
        speed = float(query.get("speed", 1.0))
    except ValueError:
        speed = -1.0
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise _bad(f"speed must be between {MIN_SPEED} and {MAX_SPEED}.", "speed")
    if query.get("mip_opt_out", "false").lower() not in _FLAGS:
        raise _bad("mip_opt_out must be true or false.", "mip_opt_out")
    model = query.get("model") or ""
    voice = await _voice(gateway, settings, model, deps.voice_access(connection))
    return SpeakParams(
        model or voice,
        voice,
        cast(RawEncoding, encoding),
        rate,
        cast(Container, container),
        speed,
    )


async def _voice(gateway: Gateway, settings: Settings, model: str, access: VoiceAccess) -> str:
    """The voice a Deepgram `model` names: the DEEPGRAM_VOICES table, else a voice name of
    the gateway's own (built-in, alias or saved)."""
    if not model:
        return settings.default_speaker
    table = {name.lower(): voice for name, voice in settings.deepgram_voices.items()}
    if model.lower() in table:
        return table[model.lower()]
    try:
        await gateway.voices.resolve(model, access)
    except GatewayError as exc:
        known = ", ".join(sorted(settings.deepgram_voices))
        raise _bad(
            f"Unknown model {model!r}: use one of {known}, or a voice name of this gateway "
            "(GET /v1/audio/voices).",
            "model",
        ) from exc
    return model


def deepgram_error(error: GatewayError, request_id: str) -> JSONResponse:
    """Deepgram's error body and `dg-error` header, with the gateway's status."""
    code = (error.code or "bad_request").upper()
    body = {"err_code": code, "err_msg": error.message, "request_id": request_id}
    # A header holds printable ASCII only; the message may quote what the client sent.
    header = "".join(c if " " <= c <= "~" else "?" for c in error.message)
    headers = error.headers | {"dg-error": header, "dg-request-id": request_id}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


def _headers(params: SpeakParams, request_id: str) -> dict[str, str]:
    return {
        "dg-request-id": request_id,
        "dg-model-name": params.model,
        "dg-model-uuid": model_uuid(params.model),
    }


@router.websocket("/v1/speak")
async def speak_stream(websocket: WebSocket) -> None:
    async def start(
        gateway: Gateway, settings: Settings, rid: str
    ) -> tuple[DeepgramSession, dict[str, str]]:
        params = await speak_params(websocket, gateway, http=False)
        handler = DeepgramSession(websocket, gateway, params, rid)
        await handler.open()
        return handler, _headers(params, rid)

    await serve(websocket, "deepgram", start, refuse=deepgram_error)


@router.post("/v1/speak", response_model=None)
async def speak(request: Request) -> Response:
    """Deepgram's REST form: `{"text": ...}` in, the audio streamed back."""
    rid = str(request.scope.get("state", {}).get("request_id") or uuid.uuid4())
    try:
        gateway = deps.gateway(request)
        params = await speak_params(request, gateway, http=True)
        text = await _text(request)
        job = await gateway.speech_job(
            SpeechRequest(
                model=gateway.settings.model_name,
                input=text,
                voice=params.voice,
                response_format="pcm",
                speed=params.speed,
            ),
            deps.voice_access(request),
        )
        media_type = params.encoder().media_type
        return await synthesis_response(
            request,
            gateway.pipeline,
            job,
            "audio",
            encoder=params.encoder,
            media_type=media_type,
            headers=_headers(params, rid) | {"dg-char-count": str(len(text))},
        )
    except GatewayError as exc:
        request.scope.setdefault("state", {})["error_cause"] = exc.code or "unknown"
        return deepgram_error(exc, rid)


async def _text(request: Request) -> str:
    try:
        body: Any = await request.json()
    except ValueError as exc:
        raise InvalidRequest('The body must be JSON: {"text": "..."}.', param="text") from exc
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("text must be a non-empty string.", param="text")
    if not encodable(text):
        raise InvalidRequest(
            "text must not contain lone surrogates (U+D800-U+DFFF): send valid Unicode.",
            param="text",
        )
    return text
