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
import math
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import send_error
from app.api.limits import RateLimiter
from app.api.limits import client_ip as ip
from app.config import Settings
from app.errors import AuthenticationFailed, RateLimited

HEALTH_PATHS = ("/health", "/live", "/ready", "/metrics")


def load_api_keys(settings: Settings) -> frozenset[str]:
    """Keys from API_KEYS plus API_KEYS_FILE (one per line; blank lines and # comments
    skipped) plus ADMIN_API_KEYS."""
    keys = {key.strip() for key in [*settings.api_keys, *settings.admin_api_keys] if key.strip()}
    if settings.api_keys_file is not None:
        for line in Path(settings.api_keys_file).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keys.add(line)
    return frozenset(keys)


def key_identity(key: str) -> str:
    """A stable, non-secret name for a key (rate-limit bucket, logs, the owner of the
    voices it saves)."""
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
    """401 in the OpenAI envelope unless the request carries a configured key.

    Wrong keys are limited per client IP (`failures`): once an IP has used up its
    budget of failed attempts, its requests with a key get 429 with `Retry-After`
    until the bucket refills, before the key is even compared, so guessing runs at
    the budget's pace, however many requests are sent.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str],
        public_paths: Iterable[str],
        failures: RateLimiter | None = None,
        admin_keys: Iterable[str] = (),
    ) -> None:
        """``admin_keys``: those of ``keys`` that manage every saved voice."""
        self.app = app
        self.admin = frozenset(admin_keys)
        self.keys = tuple((key.encode(), key in self.admin) for key in keys)
        self.public = frozenset(public_paths)
        self.failures = failures

    def _matches(self, token: str) -> bool:
        return self._match(token)[0]

    def _match(self, token: str) -> tuple[bool, bool]:
        """(a configured key, an admin key), comparing against every key in constant time."""
        candidate = token.encode()
        found = admin = False
        for key, is_admin in self.keys:
            same = hmac.compare_digest(candidate, key)
            found |= same
            admin |= same and is_admin
        return found, admin

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
        wait = None if token is None or self.failures is None else self.failures.wait(ip(scope))
        if wait is not None:
            retry = max(1, math.ceil(wait))
            blocked = RateLimited(
                f"Too many failed API key attempts from this address; retry in {retry} s.",
                code="too_many_auth_failures",
                headers={"Retry-After": str(retry)},
            )
            await send_error(scope, send, blocked)
            return
        if token is None:
            error = AuthenticationFailed(
                "Missing API key: send `Authorization: Bearer <key>`.", code="missing_api_key"
            )
        elif not (match := self._match(token))[0]:
            error = AuthenticationFailed("Incorrect API key provided.")
            if self.failures is not None:
                self.failures.acquire(ip(scope))
        else:
            state = scope.setdefault("state", {})
            state["client_id"] = key_identity(token)
            state["admin"] = match[1]
            await self.app(scope, receive, send)
            return
        error.headers["WWW-Authenticate"] = "Bearer"
        await send_error(scope, send, error)
