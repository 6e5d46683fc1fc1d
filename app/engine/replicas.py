"""Token backend replicas: least-busy routing and a circuit breaker per replica.

A replica that fails `failures` times in a row (refused, reset, 5xx, dropped) while
none of its streams is being served is taken out of rotation for a back-off, then
probed (`GET /v1/models`, else `/health`); an answer puts it back, silence doubles
the back-off up to `max_backoff`. Failures while the replica is serving other
streams mean overload (a full listen backlog resets connections), not a dead
replica: they are retried, and do not open its circuit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

log = logging.getLogger(__name__)

ReplicaState = Literal["closed", "open", "probing"]
_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 1.0


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 3
    """Consecutive failures, with nothing served meanwhile, that open the circuit."""
    backoff: float = 1.0
    """Seconds out of rotation before the first probe."""
    max_backoff: float = 30.0


@dataclass(frozen=True)
class ReplicaHealth:
    url: str
    state: ReplicaState
    in_flight: int
    failures_total: int
    opened_total: int
    retry_in: float | None
    """Seconds until the next probe while out of rotation."""


class Replica:
    def __init__(self, url: str, policy: BreakerPolicy) -> None:
        self.url = url
        self.in_flight = 0
        """Requests sent or streaming."""
        self.serving = 0
        """Responses answered (< 500) and still open: proof the replica is alive."""
        self.state: ReplicaState = "closed"
        self.consecutive = 0
        self.failures_total = 0
        self.opened_total = 0
        self.backoff = policy.backoff
        self.probe_at = 0.0


class ReplicaSet:
    """The replicas of one engine; every method runs on the engine's event loop."""

    def __init__(
        self,
        urls: list[str],
        policy: BreakerPolicy,
        probe: Callable[[str], Awaitable[bool]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.replicas = [Replica(url, policy) for url in urls]
        self._probe = probe
        self._clock = clock
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.retries = 0
        """Attempts after the first, all requests together."""

    def route(self) -> list[Replica]:
        """Replicas in rotation, in the order to try: fewest in flight, round-robin on ties."""
        count = len(self.replicas)
        start = self._next
        self._next = (self._next + 1) % count
        order = sorted(
            range(count), key=lambda i: (self.replicas[i].in_flight, (i - start) % count)
        )
        return [self.replicas[i] for i in order if self.replicas[i].state == "closed"]

    def succeeded(self, replica: Replica) -> None:
        replica.consecutive = 0

    def failed(self, replica: Replica, reason: str) -> None:
        replica.failures_total += 1
        if replica.serving > 0 or replica.state != "closed":
            return
        replica.consecutive += 1
        if replica.consecutive >= self.policy.failures:
            self._open(replica, reason)

    def _open(self, replica: Replica, reason: str) -> None:
        replica.state = "open"
        replica.opened_total += 1
        replica.probe_at = self._clock() + replica.backoff
        log.warning(
            "token backend %s out of rotation for %.1f s after %d failures: %s",
            replica.url, replica.backoff, replica.consecutive, reason,
        )  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._probe_back(replica))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe_back(self, replica: Replica) -> None:
        while True:
            await asyncio.sleep(max(0.0, replica.probe_at - self._clock()))
            replica.state = "probing"
            back = await self._probe(replica.url)
            if back:
                log.info("token backend %s answers again: back in rotation", replica.url)
                replica.state = "closed"
                replica.consecutive = 0
                replica.backoff = self.policy.backoff
            else:
                replica.backoff = min(replica.backoff * 2, self.policy.max_backoff)
                replica.state = "open"
                replica.probe_at = self._clock() + replica.backoff
            # Requests waiting for a replica look again.
            self._changed.set()
            self._changed = asyncio.Event()
            if back:
                return

    async def wait_to_retry(self, attempt: int, deadline: float) -> bool:
        """Wait before attempt `attempt + 1`: a short jittered back-off while a replica is
        in rotation, else until a probe due within the first back-off puts one back.
        False (at once) when neither can happen before `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        if any(r.state == "closed" for r in self.replicas):
            pause = min(_RETRY_FIRST * 2**attempt, _RETRY_MAX) * random.uniform(0.5, 1.0)
            if loop.time() + pause >= deadline:
                return False
            await asyncio.sleep(pause)
            self.retries += 1
            return True
        # Every replica is out: wait for a probe due soon, but fail fast through an
        # outage rather than hold each request until its deadline.
        while not any(r.state == "closed" for r in self.replicas):
            soonest = min(r.probe_at for r in self.replicas) - self._clock()
            remaining = deadline - loop.time()
            if soonest >= min(remaining, self.policy.backoff):
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return False
        self.retries += 1
        return True

    def retry_after(self) -> int:
        """Whole seconds until some replica may be back (for `Retry-After`)."""
        if any(r.state == "closed" for r in self.replicas):
            return 1
        soonest = min(r.probe_at for r in self.replicas) - self._clock()
        return max(1, round(soonest + 0.5))

    def health(self) -> list[ReplicaHealth]:
        now = self._clock()
        return [
            ReplicaHealth(
                url=r.url,
                state=r.state,
                in_flight=r.in_flight,
                failures_total=r.failures_total,
                opened_total=r.opened_total,
                retry_in=None if r.state == "closed" else max(0.0, r.probe_at - now),
            )
            for r in self.replicas
        ]

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
