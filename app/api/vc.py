"""`POST /v1/audio/vc`: zero-shot voice cloning from an uploaded reference (multipart).

The Scicom streaming TTS API's fields (`reference_audio`, `reference_text`,
`generate_text`, `model`, `response_format`, `temperature`, `repetition_penalty`,
`max_tokens`, `stream`) plus those `/v1/audio/speech` takes; the response streams
exactly as `/v1/audio/speech` does.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from app.api import deps
from app.api.responses import AUDIO_RESPONSES, synthesis_response
from app.api.uploads import openapi_form, read_upload, validate_fields
from app.audio.reference import ReferenceLimits, load_reference
from app.codec.batcher import DecoderService
from app.config import Settings
from app.errors import InvalidRequest
from app.protocol import ResponseFormat, StreamFormat
from app.service.cloning import VoiceReference, encode_reference
from app.service.jobs import JobFactory
from app.service.prompts import sanitize_text
from app.service.speech import SpeechPipeline

router = APIRouter(tags=["voice cloning"])

REFERENCE_FILE = "reference_audio"


class CloneForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference_text: str = Field(description="Transcript of reference_audio.")
    generate_text: str = Field(description="Text to speak in the reference voice.")
    model: str | None = None
    response_format: ResponseFormat = "mp3"
    stream: bool = True
    stream_format: StreamFormat = "audio"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=7, le=65536)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


_FIELD_DOCS: dict[str, dict[str, object]] = {
    REFERENCE_FILE: {"type": "string", "format": "binary"},
    **{
        name: {"type": "string"} if name != "stream" else {"type": "boolean"}
        for name in CloneForm.model_fields
    },
}


def decoder(request: Request) -> DecoderService:
    value: DecoderService = request.app.state.decoder
    return value


def reference_text(value: str, param: str = "reference_text") -> str:
    """The transcript as it goes into prompts; 400 when nothing speakable is left."""
    text = sanitize_text(value)
    if not text:
        raise InvalidRequest(
            f"{param} must contain the transcript of {REFERENCE_FILE}.",
            param=param,
            code="missing_required_parameter",
        )
    return text


async def reference_from_upload(
    file: UploadFile, text: str, settings: Settings, decoder: DecoderService
) -> VoiceReference:
    """Decode the uploaded clip (worker thread) and SNAC-encode it (decoder worker)."""
    limits = ReferenceLimits(settings.min_reference_seconds, settings.max_reference_seconds)
    audio = await asyncio.to_thread(load_reference, file.file, limits, param=REFERENCE_FILE)
    return await encode_reference(decoder, audio, text)


@router.post(
    "/v1/audio/vc",
    responses=AUDIO_RESPONSES,
    response_model=None,
    openapi_extra=openapi_form([REFERENCE_FILE, "reference_text", "generate_text"], _FIELD_DOCS),
)
async def clone_voice(
    request: Request,
    settings: Annotated[Settings, Depends(deps.settings)],
    jobs: Annotated[JobFactory, Depends(deps.jobs)],
    pipeline: Annotated[SpeechPipeline, Depends(deps.pipeline)],
    codec: Annotated[DecoderService, Depends(decoder)],
) -> Response:
    upload = await read_upload(
        request,
        max_bytes=settings.max_upload_bytes,
        fields=CloneForm.model_fields,
        files=(REFERENCE_FILE,),
    )
    try:
        form = validate_fields(CloneForm, upload.fields)
        jobs.check_model(form.model or settings.model_name)
        jobs.check_text(form.generate_text, "generate_text")
        transcript = reference_text(form.reference_text)
        jobs.check_text(transcript, "reference_text")
        reference = await reference_from_upload(
            upload.files[REFERENCE_FILE], transcript, settings, codec
        )
    finally:
        await upload.close()
    job = jobs.clone(
        reference,
        form.generate_text,
        param="generate_text",
        temperature=form.temperature,
        top_p=form.top_p,
        repetition_penalty=form.repetition_penalty,
        max_tokens=form.max_tokens,
        seed=form.seed,
        response_format=form.response_format,
        speed=form.speed,
        streaming=form.stream,
    )
    return await synthesis_response(request, pipeline, job, form.stream_format)
