"""Probes: `/health` and `/live` (the process serves requests), `/ready` (it can synthesize).

Ready means the codec is loaded with its codec worker thread running and done warming
up (CUDA graphs, torch.compile), and at least one token backend replica in rotation
answers; otherwise 503, so a load balancer routes elsewhere. A gateway draining for
shutdown is not ready.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api import deps

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    gateway = deps.gateway_or_none(request)
    # The pid tells which worker process answered (WORKERS > 1).
    if gateway is None:
        return {"status": "starting", "pid": os.getpid()}
    return {
        "status": "ok",
        "engine": gateway.engine.name,
        "decoder_queue": gateway.codec.stats().queue_depth,
        "pid": os.getpid(),
    }


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready, or shutting down"}})
async def ready(request: Request) -> JSONResponse:
    drain = deps.drain(request)
    if drain is not None and drain.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    gateway = deps.gateway_or_none(request)
    readiness = await gateway.readiness() if gateway is not None else None
    codec = readiness is not None and readiness.codec
    warming = readiness is not None and readiness.warming
    backend = readiness is not None and readiness.backend
    ok = readiness is not None and readiness.ready
    body: dict[str, object] = {
        "status": "ready" if ok else "not_ready",
        "codec": "warming_up" if warming else "loaded" if codec else "unavailable",
        "backend": "answering" if backend else "unavailable",
    }
    if readiness is not None and readiness.replicas is not None:
        # Replicas whose circuit is open are not asked; ready while one in rotation answers.
        body["replicas"] = readiness.replicas
    return JSONResponse(body, status_code=200 if ok else 503)
