"""API keys: `Authorization: Bearer <key>` against API_KEYS and/or API_KEYS_FILE.

`Authorization: Token <key>` (what Deepgram clients send) is the same key. WebSocket
handshakes are checked like HTTP requests and refused with the same 401 (the ASGI
denial response) before any session starts. With no keys configured the gateway is open.
Keys are compared in constant time, against every configured key, so timing reveals
neither a key nor which one matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import send_error
from app.config import Settings
from app.errors import AuthenticationFailed

HEALTH_PATHS = ("/health", "/live", "/ready", "/metrics")


def load_api_keys(settings: Settings) -> frozenset[str]:
    """Keys from API_KEYS plus API_KEYS_FILE (one per line; blank lines and # comments skipped)."""
    keys = {key.strip() for key in settings.api_keys if key.strip()}
    if settings.api_keys_file is not None:
        for line in Path(settings.api_keys_file).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keys.add(line)
    return frozenset(keys)


def key_identity(key: str) -> str:
    """A stable, non-secret name for a key (rate-limit bucket, logs)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() in ("bearer", "token") and token.strip():
                return str(token.strip())
            return None
    return None


class ApiKeyMiddleware:
    """401 in the OpenAI envelope unless the request carries a configured key."""

    def __init__(self, app: ASGIApp, keys: Iterable[str], public_paths: Iterable[str]) -> None:
        self.app = app
        self.keys = tuple(key.encode() for key in keys)
        self.public = frozenset(public_paths)

    def _matches(self, token: str) -> bool:
        candidate = token.encode()
        found = False
        for key in self.keys:
            found |= hmac.compare_digest(candidate, key)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or not self.keys
            or scope["path"] in self.public
            or scope.get("method") == "OPTIONS"  # CORS preflights carry no credentials
        ):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            error = AuthenticationFailed(
                "Missing API key: send `Authorization: Bearer <key>`.", code="missing_api_key"
            )
        elif not self._matches(token):
            error = AuthenticationFailed("Incorrect API key provided.")
        else:
            scope.setdefault("state", {})["client_id"] = key_identity(token)
            await self.app(scope, receive, send)
            return
        error.headers["WWW-Authenticate"] = "Bearer"
        await send_error(scope, send, error)
