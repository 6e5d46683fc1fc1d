"""Voices and models: `GET /v1/audio/speaker` and `GET /v1/models`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends

from app.api import deps
from app.protocol import ModelCard, ModelList, Speaker, SpeakerList
from app.service.jobs import JobFactory

router = APIRouter(tags=["voices"])


@router.get("/v1/audio/speaker")
async def list_speakers(jobs: Annotated[JobFactory, Depends(deps.jobs)]) -> SpeakerList:
    saved = await asyncio.to_thread(jobs.saved.list) if jobs.saved is not None else []
    data = [Speaker(id=v.id, name=v.name, kind="saved") for v in saved]
    return SpeakerList(default=jobs.voices.default, data=jobs.voices.listing() + data)


@router.get("/v1/models")
async def list_models(jobs: Annotated[JobFactory, Depends(deps.jobs)]) -> ModelList:
    return ModelList(data=[ModelCard(id=model_id) for model_id in jobs.model_ids])
