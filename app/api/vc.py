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
from pydantic import ConfigDict, Field
from starlette.datastructures import UploadFile

from app.api import deps
from app.api.responses import AUDIO_RESPONSES, synthesis_response
from app.api.uploads import openapi_form, read_upload, validate_fields
from app.audio.reference import ReferenceLimits, load_reference
from app.codec.batcher import DecoderService
from app.config import Settings
from app.errors import InvalidRequest
from app.protocol import SynthesisOptions
from app.service.cloning import VoiceReference, encode_reference
from app.service.jobs import JobFactory
from app.service.prompts import sanitize_text
from app.service.speech import SpeechPipeline

router = APIRouter(tags=["voice cloning"])

REFERENCE_FILE = "reference_audio"


class CloneForm(SynthesisOptions):
    model_config = ConfigDict(extra="forbid")

    reference_text: str = Field(description="Transcript of reference_audio.")
    generate_text: str = Field(description="Text to speak in the reference voice.")
    model: str | None = None


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
    job = jobs.clone(reference, form.generate_text, form, param="generate_text")
    return await synthesis_response(request, pipeline, job, form.stream_format)
