"""Probes: `/health` and `/live` (the process serves requests), `/ready` (it can synthesize).

Ready means the codec is loaded with its decoder thread running and at least one
token backend answers; otherwise 503, so a load balancer routes elsewhere.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.service.speech import SpeechPipeline

router = APIRouter(tags=["health"])


def _pipeline(request: Request) -> SpeechPipeline | None:
    # Absent while the lifespan is still loading models.
    value: SpeechPipeline | None = getattr(request.app.state, "pipeline", None)
    return value


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    pipeline = _pipeline(request)
    if pipeline is None:
        return {"status": "starting"}
    return {
        "status": "ok",
        "engine": pipeline.engine.name,
        "decoder_queue": pipeline.decoder.stats().queue_depth,
    }


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready"}})
async def ready(request: Request) -> JSONResponse:
    pipeline = _pipeline(request)
    codec = pipeline is not None and pipeline.decoder.stats().running
    backend = bool(pipeline is not None and await pipeline.engine.ready())
    ok = codec and backend
    body = {
        "status": "ready" if ok else "not_ready",
        "codec": "loaded" if codec else "unavailable",
        "backend": "answering" if backend else "unavailable",
    }
    return JSONResponse(body, status_code=200 if ok else 503)
