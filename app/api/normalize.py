"""`POST /v1/audio/normalize`: the normalized text and its segments, without audio.

A debugging aid: it shows what the model would be asked to say for an `input`.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.api import deps
from app.protocol import NormalizeRequest, NormalizeResponse

router = APIRouter(tags=["text"])


@router.post("/v1/audio/normalize")
async def normalize(body: NormalizeRequest, gateway: deps.CurrentGateway) -> NormalizeResponse:
    gateway.jobs.check_text(body.input)
    # Pure CPU work, but MAX_INPUT_CHARS may be raised: keep it off the event loop.
    spoken = await asyncio.to_thread(gateway.prepare, body.input, normalize=body.normalize)
    return NormalizeResponse(
        input=body.input, normalized=spoken.normalized, segments=spoken.segments
    )
