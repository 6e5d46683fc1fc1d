"""Probes: `/health` and `/live` (the process serves requests), `/ready` (it can synthesize).

Ready means the codec is loaded with its worker thread running and at least one
token backend answers; otherwise 503, so a load balancer routes elsewhere.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api import deps

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    gateway = deps.gateway_or_none(request)
    if gateway is None:
        return {"status": "starting"}
    return {
        "status": "ok",
        "engine": gateway.engine.name,
        "decoder_queue": gateway.codec.stats().queue_depth,
    }


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready"}})
async def ready(request: Request) -> JSONResponse:
    gateway = deps.gateway_or_none(request)
    readiness = await gateway.readiness() if gateway is not None else None
    codec = readiness is not None and readiness.codec
    backend = readiness is not None and readiness.backend
    ok = codec and backend
    body = {
        "status": "ready" if ok else "not_ready",
        "codec": "loaded" if codec else "unavailable",
        "backend": "answering" if backend else "unavailable",
    }
    return JSONResponse(body, status_code=200 if ok else 503)
