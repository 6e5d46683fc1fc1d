"""`POST /v1/audio/speech`: OpenAI-compatible, streamed audio or SSE events."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api import deps
from app.api.responses import AUDIO_RESPONSES, synthesis_response
from app.protocol import SpeechRequest

router = APIRouter(tags=["speech"])


@router.post("/v1/audio/speech", responses=AUDIO_RESPONSES, response_model=None)
async def create_speech(
    body: SpeechRequest,
    request: Request,
    gateway: deps.CurrentGateway,
) -> Response:
    job = await gateway.speech_job(body, deps.voice_access(request))
    # Streaming, SSE, complete files and admission are shared with /v1/audio/vc.
    return await synthesis_response(request, gateway.pipeline, job, body.stream_format)
