"""Voices and models: `GET /v1/audio/speaker` and `GET /v1/models`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api import deps
from app.protocol import ModelCard, ModelList, SpeakerList
from app.service.gateway import Gateway
from app.service.voice_store import VoiceAccess

router = APIRouter(tags=["voices"])


@router.get("/v1/audio/speaker")
async def list_speakers(
    gateway: Annotated[Gateway, Depends(deps.gateway)],
    access: Annotated[VoiceAccess, Depends(deps.voice_access)],
) -> SpeakerList:
    voices = gateway.voices
    return SpeakerList(default=voices.catalog.default, data=await voices.listing(access))


@router.get("/v1/models")
async def list_models(gateway: Annotated[Gateway, Depends(deps.gateway)]) -> ModelList:
    return ModelList(data=[ModelCard(id=model_id) for model_id in gateway.jobs.model_ids])
