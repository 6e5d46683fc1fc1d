"""What a completions backend's errors mean for the client: status, type and message.

vLLM answers errors with the OpenAI envelope (HTTP status, or an in-band ``error``
event mid-stream, see shared/reference/vllm-errors.txt); FastAPI-based servers with
``detail``; others with plain text. Each becomes the gateway's own exception.

The client gets a short, sanitized message (no URLs, addresses, markup or control
characters, at most `MAX_MESSAGE_CHARS`); the body as the backend sent it and the
settings to check go to `GatewayError.detail`, which is logged, never sent.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from app.errors import BackendError, GatewayError, InvalidRequest, Overloaded

MAX_MESSAGE_CHARS: Final = 200
MAX_DETAIL_CHARS: Final = 2000
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\blocalhost:\d+\b")


def client_message(text: str) -> str:
    """`text` fit for a client: URLs and addresses removed, one line, at most 200 characters."""
    text = _ADDRESS.sub("[address]", _URL.sub("[url]", text))
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def error_message(body: bytes) -> tuple[str, str | None]:
    """Message and param from an OpenAI envelope, FastAPI `detail`, or plain text (an HTML
    page, as a proxy in front of the backend sends, is no message)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        if text.startswith("<"):
            return "no readable error message", None
        return text or "no error message", None
    return _envelope_message(data, text)


def _envelope_message(data: Any, fallback: str) -> tuple[str, str | None]:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            param = error.get("param")
            return str(error.get("message") or fallback), (
                client_message(str(param)) if param is not None else None
            )
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return str(data[key]), None
    return fallback or "no error message", None


def status_error(status: int, message: str, param: str | None, model: str) -> GatewayError:
    """The gateway's error for a backend answer of HTTP `status` with `message`."""
    short = client_message(message)
    detail = f"backend answered HTTP {status}: {message[:MAX_DETAIL_CHARS]}"
    if status in (400, 413, 422):
        return InvalidRequest(short, param=param, detail=detail)
    if status in (401, 403):
        return BackendError(
            f"token backend rejected the gateway's credentials (HTTP {status}): {short}",
            detail=f"{detail}; check TTS_API_KEY",
            retryable=False,  # configuration: no retry can fix it
        )
    if status == 404:
        return BackendError(
            f"token backend does not serve the configured model (HTTP 404): {short}",
            detail=f"{detail}; check MODEL_NAME ({model!r}) and TTS_API",
            retryable=False,
        )
    if status == 429:
        return Overloaded(f"token backend is overloaded (HTTP 429): {short}", detail=detail)
    return BackendError(f"token backend failed (HTTP {status}): {short}", detail=detail)


def _status_of(code: Any) -> int:
    # Only a plausible HTTP status counts: a code of 5000 digits must not reach int().
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        return code
    if isinstance(code, str) and len(code) == 3 and code.isascii() and code.isdigit():
        return int(code) if 100 <= int(code) <= 599 else 500
    return 500


def inband_error(error: Any, model: str) -> GatewayError:
    if not isinstance(error, dict):
        return BackendError(
            "token backend failed mid-stream",
            detail=f"in-band error: {str(error)[:MAX_DETAIL_CHARS]}",
        )
    message, param = _envelope_message({"error": error}, _dump(error))
    return status_error(_status_of(error.get("code")), message, param, model)


def _dump(value: Any) -> str:
    try:
        return json.dumps(value)[:MAX_DETAIL_CHARS]
    except ValueError:  # e.g. an integer too long to print
        return "an unprintable error event"
