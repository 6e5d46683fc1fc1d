"""Saved voices: `POST/GET /v1/audio/voices`, `GET/DELETE /v1/audio/voices/{id}`.

A voice is uploaded once (multipart: name, reference_audio, reference_text, optional
description), SNAC-encoded, and kept as codes in the voice store; `/v1/audio/speech`
then takes its id or name as `voice`. Names are unique case-insensitively and may
not be a built-in speaker or alias: a clash is 409.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from app.api import deps
from app.api.uploads import openapi_form, read_upload, validate_fields
from app.api.vc import REFERENCE_FILE, decoder, reference_from_upload, reference_text
from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.codec.batcher import DecoderService
from app.config import Settings
from app.errors import InvalidRequest, NotFound
from app.service.cloning import MIN_GENERATION_TOKENS, fit_max_tokens
from app.service.jobs import JobFactory
from app.service.prompts import sanitize_text
from app.service.voice_store import (
    ID_PREFIX,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    SavedVoice,
    VoiceNameTaken,
    VoiceStore,
)

router = APIRouter(tags=["saved voices"])


class SaveForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique name; usable as `voice` in /v1/audio/speech.")
    reference_text: str = Field(description="Transcript of reference_audio.")
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)


class VoiceInfo(BaseModel):
    id: str
    object: str = "audio.voice"
    name: str
    description: str
    reference_text: str
    reference_seconds: float
    audio_tokens: int
    created_at: int

    @classmethod
    def of(cls, voice: SavedVoice) -> VoiceInfo:
        return cls(
            id=voice.id,
            name=voice.name,
            description=voice.description,
            reference_text=voice.reference_text,
            reference_seconds=round(voice.frames * SAMPLES_PER_FRAME / SAMPLE_RATE, 3),
            audio_tokens=voice.audio_tokens,
            created_at=int(voice.created_at),
        )


class VoiceList(BaseModel):
    object: str = "list"
    data: list[VoiceInfo]


class VoiceDeleted(BaseModel):
    id: str
    object: str = "audio.voice.deleted"
    deleted: bool = True


def voice_store(request: Request) -> VoiceStore:
    value: VoiceStore = request.app.state.voice_store
    return value


def voice_name(value: str, jobs: JobFactory) -> str:
    name = sanitize_text(value)
    if not name:
        raise InvalidRequest("name must not be empty.", param="name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"name exceeds {MAX_NAME_CHARS} characters.", param="name")
    if name.lower().startswith(ID_PREFIX):
        raise InvalidRequest(f"name must not start with {ID_PREFIX!r} (ids do).", param="name")
    if jobs.voices.is_builtin(name):
        raise VoiceNameTaken(f"{name!r} is a built-in voice name.", param="name")
    return name


@router.post(
    "/v1/audio/voices",
    status_code=201,
    openapi_extra=openapi_form(
        ["name", REFERENCE_FILE, "reference_text"],
        {
            "name": {"type": "string"},
            REFERENCE_FILE: {"type": "string", "format": "binary"},
            "reference_text": {"type": "string"},
            "description": {"type": "string"},
        },
    ),
)
async def create_voice(
    request: Request,
    settings: Annotated[Settings, Depends(deps.settings)],
    jobs: Annotated[JobFactory, Depends(deps.jobs)],
    codec: Annotated[DecoderService, Depends(decoder)],
    store: Annotated[VoiceStore, Depends(voice_store)],
) -> VoiceInfo:
    upload = await read_upload(
        request,
        max_bytes=settings.max_upload_bytes,
        fields=SaveForm.model_fields,
        files=(REFERENCE_FILE,),
    )
    try:
        form = validate_fields(SaveForm, upload.fields)
        name = voice_name(form.name, jobs)
        transcript = reference_text(form.reference_text)
        jobs.check_text(transcript, "reference_text")
        file: UploadFile = upload.files[REFERENCE_FILE]
        reference = await reference_from_upload(file, transcript, settings, codec)
    finally:
        await upload.close()
    # A voice that cannot leave room for about a second of speech is useless: refuse now.
    fit_max_tokens(
        reference,
        "",
        requested=None,
        default=MIN_GENERATION_TOKENS,
        max_model_len=settings.max_model_len,
        param=REFERENCE_FILE,
    )
    voice = await asyncio.to_thread(store.create, name, reference, sanitize_text(form.description))
    return VoiceInfo.of(voice)


@router.get("/v1/audio/voices")
async def list_voices(store: Annotated[VoiceStore, Depends(voice_store)]) -> VoiceList:
    voices = await asyncio.to_thread(store.list)
    return VoiceList(data=[VoiceInfo.of(v) for v in voices])


async def _existing(store: VoiceStore, voice_id: str) -> SavedVoice:
    voice = await asyncio.to_thread(store.get, voice_id)
    if voice is None:
        raise NotFound(f"No saved voice has id {voice_id!r}.", param="voice_id")
    return voice


@router.get("/v1/audio/voices/{voice_id}")
async def get_voice(voice_id: str, store: Annotated[VoiceStore, Depends(voice_store)]) -> VoiceInfo:
    return VoiceInfo.of(await _existing(store, voice_id))


@router.delete("/v1/audio/voices/{voice_id}")
async def delete_voice(
    voice_id: str, store: Annotated[VoiceStore, Depends(voice_store)]
) -> VoiceDeleted:
    if not await asyncio.to_thread(store.delete, voice_id):
        raise NotFound(f"No saved voice has id {voice_id!r}.", param="voice_id")
    return VoiceDeleted(id=voice_id)
