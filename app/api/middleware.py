"""Per-request context: the request id (taken from `X-Request-ID` or generated, always
echoed, on 500s too), a JSON access log line, and the request counters of `/metrics`
(by route, also for requests refused before routing such as 401s)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.delivery import abort_connection
from app.api.logs import request_id
from app.api.metrics import GatewayMetrics
from app.errors import error_envelope

log = logging.getLogger("app.access")
errors_log = logging.getLogger(__name__)

HEADER = "X-Request-ID"
# Client ids end up in logs and headers: only short, plain tokens are taken as they are.
_VALID_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return str(text)
            break
    return uuid.uuid4().hex


def _route_of(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    route = scope.get("route")
    if route is None:
        # Answered before routing (API key, rate limit): the route it was meant for.
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    path = getattr(route, "path", None)
    # Unmatched paths are not used as labels: clients could create any number of series.
    return path if isinstance(path, str) else "unmatched"


async def _internal_error(send: Send) -> None:
    body = json.dumps(
        error_envelope("Internal server error.", "server_error", code="internal_error")
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: GatewayMetrics | None = None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        """``routes``: the app's routes, to label requests refused before routing."""
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope)
        token = request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500
        sent_bytes = 0
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent_bytes, responded
            if message["type"] == "http.response.start":
                responded = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Handled here rather than by Starlette's outermost handler, so the answer
            # carries the request id and the failure is logged once.
            scope["state"]["error_cause"] = "internal_error"
            errors_log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
            if not responded:
                await _internal_error(send_with_id)
            elif not await abort_connection(scope):
                raise
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope, self.routes)
            cause = scope.get("state", {}).get("error_cause")
            if self.metrics is not None:
                self.metrics.observe_request(scope["method"], route, status, elapsed)
                if isinstance(cause, str):
                    self.metrics.observe_error(cause)
            client = scope.get("client")
            log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000.0,
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000.0, 1),
                    "bytes": sent_bytes,
                    "client": client[0] if client else None,
                    "error_cause": cause,
                },
            )
            request_id.reset(token)
