"""Saved voices: `POST/GET /v1/audio/voices`, `GET/DELETE /v1/audio/voices/{id}`.

A voice is uploaded once (multipart: name, reference_audio, reference_text, optional
description), SNAC-encoded, and kept as codes in the voice store; `/v1/audio/speech`
then takes its id or name as `voice`. OpenAI's field names work too, as the openai
SDK's `audio.voices.create(name=, audio_sample=, consent=)` sends them: the clip as
`audio_sample`, `consent` kept with the voice; the transcript Orpheus needs comes as
`extra_body={"reference_text": ...}`. Names are unique case-insensitively and may
not be a built-in speaker or alias: a clash is 409. Saving takes a stream slot while
the reference is encoded (it uses the shared codec), taken before the upload is read.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile

from app.api import deps
from app.api.streaming import admit
from app.api.uploads import Upload, openapi_form, read_upload, validate_fields
from app.audio.pcm import frames_to_seconds
from app.errors import InvalidRequest, NotFound
from app.protocol import SaveVoiceForm, VoiceDeleted, VoiceInfo, VoiceList
from app.service.cloning import MIN_GENERATION_TOKENS, REFERENCE_AUDIO, fit_max_tokens, transcript
from app.service.gateway import Gateway
from app.service.prompts import sanitize_text
from app.service.voice_store import SavedVoice

router = APIRouter(tags=["saved voices"])

AUDIO_SAMPLE: Final = "audio_sample"
"""OpenAI's name for the clip (`audio.voices.create(audio_sample=...)`)."""
CLIP_FIELDS: Final = (REFERENCE_AUDIO, AUDIO_SAMPLE)


def voice_info(voice: SavedVoice) -> VoiceInfo:
    return VoiceInfo(
        id=voice.id,
        name=voice.name,
        description=voice.description,
        reference_text=voice.reference_text,
        reference_seconds=round(frames_to_seconds(voice.frames), 3),
        consent=voice.consent or None,
        audio_tokens=voice.audio_tokens,
        created_at=int(voice.created_at),
    )


@router.post(
    "/v1/audio/voices",
    status_code=201,
    openapi_extra=openapi_form(
        ["name", "reference_text"],
        {
            "name": {"type": "string"},
            REFERENCE_AUDIO: {"type": "string", "format": "binary"},
            AUDIO_SAMPLE: {"type": "string", "format": "binary", "description": "or this"},
            "reference_text": {"type": "string"},
            "description": {"type": "string"},
            "consent": {"type": "string"},
            "type": {"type": "string", "enum": ["audio_sample"]},
        },
    ),
)
async def create_voice(
    request: Request, gateway: Annotated[Gateway, Depends(deps.gateway)]
) -> VoiceInfo:
    gateway.pipeline.check_capacity()
    lease = admit(request)
    try:
        upload = await read_upload(
            request,
            max_bytes=gateway.settings.max_upload_bytes,
            fields=SaveVoiceForm.model_fields,
            files=(REFERENCE_AUDIO, AUDIO_SAMPLE),
            required=(),
        )
        try:
            form = validate_fields(SaveVoiceForm, upload.fields)
            field, clip = _clip(upload)
            name = gateway.voices.new_name(form.name)
            text = transcript(_needed_transcript(form.reference_text, field))
            gateway.jobs.check_text(text, "reference_text")
            reference = await gateway.reference(clip.file, text)
        finally:
            await upload.close()
    finally:
        await lease.close()
    # A voice that cannot leave room for about a second of speech is useless: refuse now.
    fit_max_tokens(
        reference,
        "",
        requested=None,
        default=MIN_GENERATION_TOKENS,
        max_model_len=gateway.settings.max_model_len,
        param=REFERENCE_AUDIO,
    )
    description = sanitize_text(form.description)
    voice = await asyncio.to_thread(
        gateway.store.create, name, reference, description, form.consent.strip()
    )
    return voice_info(voice)


def _clip(upload: Upload) -> tuple[str, UploadFile]:
    """The reference clip, under our name or OpenAI's, and which field it came in."""
    given = [(name, upload.files[name]) for name in CLIP_FIELDS if name in upload.files]
    if not given:
        raise InvalidRequest(
            f"{REFERENCE_AUDIO} is required: attach the audio file as form field "
            f"{REFERENCE_AUDIO!r} (or {AUDIO_SAMPLE!r}, OpenAI's name).",
            param=REFERENCE_AUDIO,
            code="missing_required_parameter",
        )
    if len(given) > 1:
        raise InvalidRequest(
            f"Send the clip once, as {REFERENCE_AUDIO} or as {AUDIO_SAMPLE}.", param=AUDIO_SAMPLE
        )
    return given[0]


def _needed_transcript(value: str | None, clip_field: str) -> str:
    if value is None:
        raise InvalidRequest(
            "reference_text is required: Orpheus models clone a voice from a clip and its "
            f"transcript. Send the words spoken in {clip_field} as form field reference_text "
            '(openai SDK: extra_body={"reference_text": "..."}).',
            param="reference_text",
            code="missing_required_parameter",
        )
    return value


@router.get("/v1/audio/voices")
async def list_voices(gateway: Annotated[Gateway, Depends(deps.gateway)]) -> VoiceList:
    """`data`: the saved voices; `voices`: every voice by id and name (Open WebUI)."""
    saved = await gateway.voices.saved()
    return VoiceList(data=[voice_info(v) for v in saved], voices=gateway.voices.choices(saved))


@router.get("/v1/audio/voices/{voice_id}")
async def get_voice(voice_id: str, gateway: Annotated[Gateway, Depends(deps.gateway)]) -> VoiceInfo:
    voice = await asyncio.to_thread(gateway.store.get, voice_id)
    if voice is None:
        raise NotFound(f"No saved voice has id {voice_id!r}.", param="voice_id")
    return voice_info(voice)


@router.delete("/v1/audio/voices/{voice_id}")
async def delete_voice(
    voice_id: str, gateway: Annotated[Gateway, Depends(deps.gateway)]
) -> VoiceDeleted:
    if not await asyncio.to_thread(gateway.store.delete, voice_id):
        raise NotFound(f"No saved voice has id {voice_id!r}.", param="voice_id")
    return VoiceDeleted(id=voice_id)
