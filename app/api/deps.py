"""The only reader of ``app.state``: typed access to the objects built at start-up.

``create_app`` puts the settings, the metrics and the stream slots there; the
lifespan adds the `Gateway` once the models are loaded. Each reader takes any connection,
an HTTP request or a WebSocket.

Routers take them through the ``Current*`` annotations: FastAPI runs a plain ``def``
dependency in a worker thread, a hop that costs far more than these reads (about 5 % of
the event loop's time per request in bench/realtime_pacing.py), so each is wrapped in a
coroutine that runs on the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.config import Settings
from app.errors import Overloaded
from app.service.gateway import Gateway
from app.service.voice_store import OPEN, VoiceAccess

if TYPE_CHECKING:  # the API modules below read their state through here
    from app.api.draining import Drain
    from app.api.limits import StreamSlots
    from app.api.metrics import GatewayMetrics

T = TypeVar("T")


def settings(request: HTTPConnection) -> Settings:
    value: Settings = request.app.state.settings
    return value


def gateway_or_none(request: HTTPConnection) -> Gateway | None:
    """The gateway, or None while the lifespan is still loading models."""
    value: Gateway | None = getattr(request.app.state, "gateway", None)
    return value


def gateway(request: HTTPConnection) -> Gateway:
    value = gateway_or_none(request)
    if value is None:
        raise Overloaded("The gateway is starting; retry shortly.", headers={"Retry-After": "1"})
    return value


def metrics(request: HTTPConnection) -> GatewayMetrics | None:
    value: GatewayMetrics | None = getattr(request.app.state, "metrics", None)
    return value


def stream_slots(request: HTTPConnection) -> StreamSlots:
    value: StreamSlots = request.app.state.stream_slots
    return value


def drain(request: HTTPConnection) -> Drain | None:
    """The shutdown drain (None in an app built without one)."""
    value: Drain | None = getattr(request.app.state, "drain", None)
    return value


def voice_access(request: HTTPConnection) -> VoiceAccess:
    """Which saved voices the caller may use: those of its API key (set by the auth
    middleware) and shared ones, every one for an admin key; all in an open gateway."""
    state = request.scope.get("state", {})
    owner = state.get("client_id")
    if not isinstance(owner, str):
        return OPEN
    return VoiceAccess(owner=owner, admin=bool(state.get("admin")))


def _on_loop(reader: Callable[[HTTPConnection], T]) -> Callable[[HTTPConnection], Awaitable[T]]:
    async def dependency(request: HTTPConnection) -> T:
        return reader(request)

    dependency.__name__ = reader.__name__
    return dependency


CurrentSettings = Annotated[Settings, Depends(_on_loop(settings))]
CurrentGateway = Annotated[Gateway, Depends(_on_loop(gateway))]
CurrentVoiceAccess = Annotated[VoiceAccess, Depends(_on_loop(voice_access))]
