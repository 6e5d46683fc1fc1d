"""Voices and models: `GET /v1/audio/speaker`, `GET /v1/models[/{id}]`, `GET /v1/audio/models`.

Every name a request may give as `model` is a model here: `models.retrieve("tts-1")`
answers as it does against OpenAI, and Open WebUI finds its model list.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api import deps
from app.errors import NotFound
from app.protocol import AudioModelList, ModelCard, ModelList, NamedItem, SpeakerList

router = APIRouter(tags=["voices"])


@router.get("/v1/audio/speaker")
async def list_speakers(
    gateway: deps.CurrentGateway,
    access: deps.CurrentVoiceAccess,
) -> SpeakerList:
    voices = gateway.voices
    return SpeakerList(default=voices.catalog.default, data=await voices.listing(access))


@router.get("/v1/models")
async def list_models(gateway: deps.CurrentGateway) -> ModelList:
    return ModelList(data=[ModelCard(id=model_id) for model_id in gateway.jobs.model_ids])


@router.get("/v1/audio/models")
async def list_audio_models(gateway: deps.CurrentGateway) -> AudioModelList:
    ids = gateway.jobs.model_ids
    return AudioModelList(
        data=[ModelCard(id=model_id) for model_id in ids],
        models=[NamedItem(id=model_id, name=model_id) for model_id in ids],
    )


# `:path`: a served name may hold slashes (`canopylabs/orpheus-3b-0.1-ft`); SDKs send %2F.
@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, gateway: deps.CurrentGateway) -> ModelCard:
    if model_id not in gateway.jobs.model_ids:
        raise NotFound(
            f"The model {model_id!r} does not exist. "
            f"Valid models: {', '.join(gateway.jobs.model_ids)}.",
            param="model",
            code="model_not_found",
        )
    return ModelCard(id=model_id)
