"""Protection from too much work: per-client rate limits and admission of concurrent streams.

Both refuse before any backend work starts: the rate limit as middleware in front
of every protected route (429), admission at the top of the speech route (503).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import send_error
from app.errors import Overloaded, RateLimited


class RateLimiter:
    """A token bucket per client: `per_minute` requests, bursts of up to as many."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, client: str) -> float | None:
        """Take one request for `client`; None if allowed, else seconds until it would be."""
        now = self._clock()
        tokens, stamp = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_clients:
                self._forget_idle(now)
            return None
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def wait(self, client: str) -> float | None:
        """None if `client` has a request left, else seconds until it has; takes nothing."""
        now = self._clock()
        tokens, stamp = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop it to bound memory.
        full_after = self.capacity / self.rate
        self._buckets = {
            key: value for key, value in self._buckets.items() if now - value[1] < full_after
        }


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


def client_identity(scope: Scope) -> str:
    """The API key's identity when authenticated (set by the auth middleware), else the IP."""
    identity = scope.get("state", {}).get("client_id")
    if isinstance(identity, str):
        return identity
    return client_ip(scope)


class RateLimitMiddleware:
    """429 with `Retry-After` once a client exceeds its budget; public paths are exempt."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, public_paths: Iterable[str]) -> None:
        self.app = app
        self.limiter = limiter
        self.public = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A WebSocket session is charged once, at its handshake.
        if (
            scope["type"] not in ("http", "websocket")
            or scope["path"] in self.public
            or scope.get("method") == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.acquire(client_identity(scope))
        if wait is None:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        error = RateLimited(
            f"Rate limit exceeded; retry in {retry} s.", headers={"Retry-After": str(retry)}
        )
        await send_error(scope, send, error)


class Slot:
    """One admitted stream's place; `release()` is idempotent."""

    def __init__(self, pool: StreamSlots) -> None:
        self._pool: StreamSlots | None = pool

    def release(self) -> None:
        if self._pool is not None:
            self._pool._free()
            self._pool = None


class StreamSlots:
    """Admission control: at most `limit` streams at once, the rest refused with 503."""

    def __init__(self, limit: int, *, retry_after: int = 1) -> None:
        self.limit = limit
        self.in_use = 0
        self._retry_after = retry_after

    def acquire(self) -> Slot:
        # One event loop owns this object: no lock, and no await between check and take.
        if self.in_use >= self.limit:
            raise Overloaded(
                f"All {self.limit} synthesis streams are busy; retry shortly.",
                code="too_many_streams",
                headers={"Retry-After": str(self._retry_after)},
            )
        self.in_use += 1
        return Slot(self)

    def try_acquire(self) -> Slot | None:
        """A slot if one is free, else None (for optional extra work: nothing is refused)."""
        if self.in_use >= self.limit:
            return None
        self.in_use += 1
        return Slot(self)

    def take_spare(self) -> Callable[[], None] | None:
        """A free slot's release, or None: for a segment generated ahead, which counts
        against admission like any stream."""
        slot = self.try_acquire()
        return slot.release if slot is not None else None

    def _free(self) -> None:
        self.in_use -= 1
