"""`POST /v1/audio/vc`: zero-shot voice cloning from an uploaded reference (multipart).

The Scicom streaming TTS API's fields (`reference_audio`, `reference_text`,
`generate_text`, `model`, `response_format`, `temperature`, `repetition_penalty`,
`max_tokens`, `stream`) plus those `/v1/audio/speech` takes; the response streams
exactly as `/v1/audio/speech` does. A stream slot is taken before the upload is read,
so an overloaded gateway answers 503 before doing any reference work.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api import deps
from app.api.responses import AUDIO_RESPONSES, synthesis_response
from app.api.streaming import admit
from app.api.uploads import openapi_form, read_upload, validate_fields
from app.protocol import CloneForm
from app.service.cloning import REFERENCE_AUDIO, transcript

router = APIRouter(tags=["voice cloning"])

_FIELD_DOCS: dict[str, dict[str, object]] = {
    REFERENCE_AUDIO: {"type": "string", "format": "binary"},
    **{
        name: {"type": "string"} if name != "stream" else {"type": "boolean"}
        for name in CloneForm.model_fields
    },
}


@router.post(
    "/v1/audio/vc",
    responses=AUDIO_RESPONSES,
    response_model=None,
    openapi_extra=openapi_form([REFERENCE_AUDIO, "reference_text", "generate_text"], _FIELD_DOCS),
)
async def clone_voice(request: Request, gateway: deps.CurrentGateway) -> Response:
    gateway.pipeline.check_capacity()
    lease = admit(request)
    try:
        upload = await read_upload(
            request,
            max_bytes=gateway.settings.max_upload_bytes,
            fields=CloneForm.model_fields,
            files=(REFERENCE_AUDIO,),
        )
        try:
            form = validate_fields(CloneForm, upload.fields)
            jobs = gateway.jobs
            jobs.check_model(form.model or gateway.settings.model_name)
            jobs.check_text(form.generate_text, "generate_text")
            text = transcript(form.reference_text)
            jobs.check_text(text, "reference_text")
            reference = await gateway.reference(upload.files[REFERENCE_AUDIO].file, text)
        finally:
            await upload.close()
        texts = await gateway.spoken(
            form.generate_text, normalize=form.normalize, param="generate_text"
        )
        job = jobs.clone(reference, texts, form, param="generate_text")
    except BaseException:
        await lease.close()
        raise
    return await synthesis_response(request, gateway.pipeline, job, form.stream_format, lease)
