"""Every error leaves the gateway in the OpenAI envelope, with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from app.api.validation import describe_validation
from app.errors import GatewayError, error_envelope, retry_headers

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.envelope(), status_code=exc.status_code, headers=exc.response_headers())


def log_failure(exc: GatewayError, what: str = "request failed", *, always: bool = False) -> None:
    """One line for a failure: its cause, the message the client got, and the detail only
    the operator sees. Client errors (4xx) without detail only when `always`."""
    if exc.status_code < 500 and exc.detail is None and not always:
        return
    level = logging.WARNING if exc.status_code >= 500 else logging.INFO
    detail = f" ({exc.detail})" if exc.detail else ""
    log.log(
        level, "%s: %s: %s%s", what, exc.code, exc.message, detail, extra={"error_cause": exc.code}
    )


def _note_cause(scope: Scope, cause: str | None) -> None:
    # Read by the request-context middleware for the errors-by-cause metric and the log.
    scope.setdefault("state", {})["error_cause"] = cause or "unknown"


async def send_error(scope: Scope, send: Send, exc: GatewayError) -> None:
    """Answer from ASGI middleware (auth, rate limits) with the envelope and status; a
    WebSocket handshake gets it as its denial response."""
    _note_cause(scope, exc.code)
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
        return

    async def no_body() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await error_response(exc)(scope, no_body, send)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        _note_cause(request.scope, exc.code)
        log_failure(exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = describe_validation(exc.errors())
        _note_cause(request.scope, code)
        return JSONResponse(
            error_envelope(message, "invalid_request_error", param=param, code=code),
            status_code=400,
            headers=retry_headers(400),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        _note_cause(request.scope, _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"))
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(
            error_envelope(str(exc.detail), kind, code=_HTTP_CODES.get(exc.status_code)),
            status_code=exc.status_code,
            headers=retry_headers(exc.status_code, getattr(exc, "headers", None)),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _note_cause(request.scope, "internal_error")
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_envelope("Internal server error.", "server_error", code="internal_error"),
            status_code=500,
        )
