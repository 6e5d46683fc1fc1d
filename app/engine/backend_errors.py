"""What a completions backend's errors mean for the client: status, type and message.

vLLM answers errors with the OpenAI envelope (HTTP status, or an in-band ``error``
event mid-stream, see shared/reference/vllm-errors.txt); FastAPI-based servers with
``detail``; others with plain text. Each becomes the gateway's own exception.
"""

from __future__ import annotations

import json
from typing import Any

from app.errors import BackendError, GatewayError, InvalidRequest, Overloaded


def error_message(body: bytes) -> tuple[str, str | None]:
    """Message and param from an OpenAI envelope, FastAPI `detail`, or plain text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "no error message", None
    return _envelope_message(data, text)


def _envelope_message(data: Any, fallback: str) -> tuple[str, str | None]:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            param = error.get("param")
            return str(error.get("message") or fallback[:500]), (
                str(param) if param is not None else None
            )
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return str(data[key]), None
    return fallback[:500] or "no error message", None


def status_error(status: int, message: str, param: str | None, model: str) -> GatewayError:
    if status in (400, 413, 422):
        return InvalidRequest(message, param=param)
    if status in (401, 403):
        return BackendError(
            f"token backend rejected the gateway's credentials (HTTP {status}); "
            f"check TTS_API_KEY: {message}",
            retryable=False,  # configuration: no retry can fix it
        )
    if status == 404:
        return BackendError(
            f"token backend does not serve model {model!r} (HTTP 404); "
            f"check MODEL_NAME and TTS_API: {message}",
            retryable=False,
        )
    if status == 429:
        return Overloaded(f"token backend is overloaded (HTTP 429): {message}")
    return BackendError(f"token backend failed (HTTP {status}): {message}")


def inband_error(error: Any, model: str) -> GatewayError:
    if not isinstance(error, dict):
        return BackendError(f"token backend failed mid-stream: {error}")
    message, param = _envelope_message({"error": error}, json.dumps(error))
    code = error.get("code")
    status = code if isinstance(code, int) else 500
    if isinstance(code, str) and code.isdigit():
        status = int(code)
    return status_error(status, message, param, model)
