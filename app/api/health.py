"""Probes: `/health` and `/live` (the process serves requests), `/ready` (it can synthesize).

Ready means the codec is loaded with its decoder thread running and at least one
token backend replica in rotation answers; otherwise 503, so a load balancer routes
elsewhere. A gateway draining for shutdown is not ready.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.draining import drain_of
from app.engine.http import HttpCompletionsEngine
from app.service.speech import SpeechPipeline

router = APIRouter(tags=["health"])


def _pipeline(request: Request) -> SpeechPipeline | None:
    # Absent while the lifespan is still loading models.
    value: SpeechPipeline | None = getattr(request.app.state, "pipeline", None)
    return value


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    pipeline = _pipeline(request)
    # The pid tells which worker process answered (WORKERS > 1).
    if pipeline is None:
        return {"status": "starting", "pid": os.getpid()}
    return {
        "status": "ok",
        "engine": pipeline.engine.name,
        "decoder_queue": pipeline.decoder.stats().queue_depth,
        "pid": os.getpid(),
    }


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready, or shutting down"}})
async def ready(request: Request) -> JSONResponse:
    drain = drain_of(request)
    if drain is not None and drain.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    pipeline = _pipeline(request)
    codec = pipeline is not None and pipeline.decoder.stats().running
    backend = bool(pipeline is not None and await pipeline.engine.ready())
    ok = codec and backend
    body: dict[str, object] = {
        "status": "ready" if ok else "not_ready",
        "codec": "loaded" if codec else "unavailable",
        "backend": "answering" if backend else "unavailable",
    }
    if pipeline is not None and isinstance(pipeline.engine, HttpCompletionsEngine):
        # Replicas whose circuit is open are not asked; ready while one in rotation answers.
        body["replicas"] = {h.url: h.state for h in pipeline.engine.replica_health()}
    return JSONResponse(body, status_code=200 if ok else 503)
