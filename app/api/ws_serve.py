"""A WebSocket session from handshake to close: checks, admission, then `run_session`.

Everything that can refuse a session does so before the handshake is accepted, as an HTTP
response (the ASGI denial extension): the surface's own checks (Deepgram's query), a gateway
still starting, a full decoder, no free stream slot, a drain. A session holds its slot until
it closes; its segments generated ahead take spare ones, as HTTP's do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import WebSocket
from fastapi.responses import JSONResponse, Response

from app.api import deps
from app.api.limits import Slot
from app.api.logs import request_id
from app.api.middleware import incoming_request_id
from app.api.websocket import POLICY, SessionHandler, run_session
from app.audio.encoders import StreamingEncoder
from app.config import Settings
from app.errors import GatewayError, Overloaded
from app.protocol import SynthesisOptions
from app.service.gateway import Gateway
from app.service.session import SynthesisSession
from app.service.voices import Voice

log = logging.getLogger(__name__)

Start = Callable[[Gateway, Settings, str], Awaitable[tuple[SessionHandler, dict[str, str]]]]
"""Builds a surface's handler and its handshake headers from the gateway, the settings and
the request id; raises GatewayError to refuse the handshake."""


async def serve(
    websocket: WebSocket,
    protocol: str,
    start: Start,
    *,
    refuse: Callable[[GatewayError, str], Response] | None = None,
) -> None:
    """A whole session: checks and admission before the handshake (a refusal is an HTTP
    response, ``refuse`` renders it with the request id), then `run_session`; the slot is
    freed however it ends."""
    rid = session_request_id(websocket)
    settings = deps.settings(websocket)
    gateway = deps.gateway_or_none(websocket)
    render = refuse or (lambda error, _: error_response(error))
    slot: Slot | None = None
    try:
        if gateway is None:
            raise Overloaded(
                "The gateway is starting; retry shortly.", headers={"Retry-After": "1"}
            )
        handler, headers = await start(gateway, settings, rid)
        slot = admit(websocket)
    except GatewayError as exc:
        await deny(websocket, render(exc, rid))
        return
    assert slot is not None
    metrics = deps.metrics(websocket)
    started, code = time.monotonic(), 1005

    def ended(close: int) -> None:
        nonlocal code
        code = close
        if metrics is not None:
            metrics.observe_session(protocol, close)

    try:
        raw = [(b"x-request-id", rid.encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await websocket.accept(headers=raw)
        await run_session(websocket, handler, settings, on_end=ended)
    finally:
        slot.release()
        seconds = time.monotonic() - started
        log.info(
            "websocket %s closed %d after %.1f s",
            websocket.url.path,
            code,
            seconds,
            extra={"protocol": protocol, "close_code": code, "duration_ms": round(seconds * 1e3)},
        )


def open_session(
    websocket: WebSocket,
    gateway: Gateway,
    voice: Voice,
    options: SynthesisOptions,
    encoder: Callable[[], StreamingEncoder],
) -> SynthesisSession:
    """A synthesis session whose lookahead segments take spare slots, as HTTP's do, and
    whose utterances are counted in the metrics; refused (503) while the decoder is full."""
    gateway.pipeline.check_capacity()
    metrics = deps.metrics(websocket)
    return SynthesisSession(
        gateway,
        voice,
        options,
        encoder,
        max_pending_chars=gateway.settings.ws_max_pending_chars,
        extra_slot=deps.stream_slots(websocket).take_spare,
        observe=metrics.observe_synthesis if metrics is not None else None,
    )


def admit(websocket: WebSocket) -> Slot:
    """A stream slot for the whole session, before the handshake is accepted."""
    drain = deps.drain(websocket)
    if drain is not None:
        drain.refuse_if_draining()
    return deps.stream_slots(websocket).acquire()


async def deny(websocket: WebSocket, response: Response) -> None:
    """Refuse the handshake with an HTTP response (the ASGI denial extension), or 403."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(POLICY)


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        error.envelope(), status_code=error.status_code, headers=error.headers | (headers or {})
    )


def session_request_id(websocket: WebSocket) -> str:
    rid = incoming_request_id(websocket.scope)
    websocket.scope.setdefault("state", {})["request_id"] = rid
    request_id.set(rid)
    return rid
