"""Saved voices: `POST/GET /v1/audio/voices`, `GET/DELETE /v1/audio/voices/{id}`.

A voice is uploaded once (multipart: name, reference_audio, reference_text, optional
description), SNAC-encoded, and kept as codes in the voice store; `/v1/audio/speech`
then takes its id or name as `voice`. OpenAI's field names work too, as the openai
SDK's `audio.voices.create(name=, audio_sample=, consent=)` sends them: the clip as
`audio_sample`, `consent` kept with the voice; the transcript Orpheus needs comes as
`extra_body={"reference_text": ...}`. Names are unique case-insensitively and may
not be a built-in speaker or alias: a clash is 409. Saving takes a stream slot while
the reference is encoded (it uses the shared codec), taken before the upload is read.

With API keys, a voice belongs to the key that saved it: other keys neither list, use
nor delete it (404), unless an admin key saved it with `shared=true`. Each key may keep
`MAX_VOICES_PER_KEY` voices. Listings are pages (`limit`, `after`).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile

from app.api import deps
from app.api.streaming import admit
from app.api.uploads import Upload, openapi_form, read_upload, validate_fields
from app.audio.pcm import frames_to_seconds
from app.errors import Forbidden, InvalidRequest, NotFound
from app.protocol import MAX_VOICES_PAGE, SaveVoiceForm, Text, VoiceDeleted, VoiceInfo, VoiceList
from app.service.cloning import MIN_GENERATION_TOKENS, REFERENCE_AUDIO, fit_max_tokens, transcript
from app.service.prompts import sanitize_text
from app.service.voice_store import SavedVoice, quota_exceeded

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
        shared=voice.shared,
    )


def _not_found(voice_id: str) -> NotFound:
    return NotFound(f"No saved voice has id {voice_id!r}.", param="voice_id")


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
            "shared": {"type": "boolean"},
        },
    ),
)
async def create_voice(
    request: Request,
    gateway: deps.CurrentGateway,
    access: deps.CurrentVoiceAccess,
) -> VoiceInfo:
    gateway.pipeline.check_capacity()
    quota = gateway.settings.max_voices_per_key or None
    if access.admin:
        quota = None
    if quota is not None and await asyncio.to_thread(gateway.store.count, access.owner) >= quota:
        raise quota_exceeded(quota)  # before the upload and its encode
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
            if form.shared and not access.sees_all:
                raise Forbidden("Only an admin key may save a shared voice.", param="shared")
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
        functools.partial(
            gateway.store.create,
            name,
            reference,
            description,
            form.consent.strip(),
            owner=access.owner,
            shared=form.shared,
            quota=quota,
        )
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
async def list_voices(
    gateway: deps.CurrentGateway,
    access: deps.CurrentVoiceAccess,
    limit: Annotated[int, Query(ge=1, le=MAX_VOICES_PAGE)] = MAX_VOICES_PAGE,
    after: Annotated[
        Text | None, Query(description="id of the last voice of the page before")
    ] = None,
) -> VoiceList:
    """`data`: a page of the saved voices `access` may use; `voices`: the built-in voices
    and that page's saved ones by id and name (Open WebUI's list)."""
    store = gateway.store
    cursor = None
    if after is not None:
        cursor = await asyncio.to_thread(store.get, after, access)
        if cursor is None:
            raise InvalidRequest(f"after: no saved voice has id {after!r}.", param="after")
    voices = await asyncio.to_thread(
        functools.partial(store.list, access, after=cursor, limit=limit + 1)
    )
    saved = voices[:limit]
    page = [voice_info(v) for v in saved]
    return VoiceList(
        data=page,
        voices=gateway.voices.choices(saved),
        has_more=len(voices) > limit,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )


async def saved_voice(
    voice_id: str,
    gateway: deps.CurrentGateway,
    access: deps.CurrentVoiceAccess,
) -> SavedVoice:
    """The saved voice the path names, if `access` may see it; 404 otherwise."""
    voice = await asyncio.to_thread(gateway.store.get, voice_id, access)
    if voice is None:
        raise _not_found(voice_id)
    return voice


@router.get("/v1/audio/voices/{voice_id}")
async def get_voice(voice: Annotated[SavedVoice, Depends(saved_voice)]) -> VoiceInfo:
    return voice_info(voice)


@router.delete("/v1/audio/voices/{voice_id}")
async def delete_voice(
    voice: Annotated[SavedVoice, Depends(saved_voice)],
    gateway: deps.CurrentGateway,
    access: deps.CurrentVoiceAccess,
) -> VoiceDeleted:
    if not voice.deletable_by(access):
        raise Forbidden("Only an admin key may delete a shared voice.", param="voice_id")
    if not await asyncio.to_thread(gateway.store.delete, voice.id):
        raise _not_found(voice.id)
    return VoiceDeleted(id=voice.id)
