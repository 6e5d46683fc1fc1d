"""Token engine over OpenAI-compatible `/v1/completions` streaming (vLLM first).

Each request goes to the least busy replica in rotation (`replicas`: a circuit
breaker per replica). A refusal or reset before the first token is retried on
another replica, or the same one after a short back-off, until the first-token
deadline: nothing has been generated yet. Once tokens flow, a replica's answer (or
error) is final. The stream runs on a lean connection of its own
(`completion_stream`) whose events `CompletionEvents` reads; every wait has a
deadline, and closing the stream drops the connection so the backend stops
generating. Readiness probes use httpx.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import httpx
import orjson

from app.engine.backend_errors import error_message, status_error
from app.engine.base import GenerationParams, Prompt, TokenBatch, WakeAt
from app.engine.completion_events import CompletionEvents
from app.engine.completion_stream import CompletionStream, Endpoint, StreamBroken, Unreachable
from app.engine.replicas import BreakerPolicy, Replica, ReplicaHealth, ReplicaSet
from app.errors import BackendError, BackendTimeout, BackendUnavailable, GatewayError

_DRAIN_TIMEOUT = 2.0
_COMPLETIONS = "/v1/completions"
_CLOCK_SLACK = 0.002
"""Seconds: the loop's clock may run a tick behind `time.perf_counter` (libuv's is coarse)."""


def completion_request_body(model: str, prompt: Prompt, params: GenerationParams) -> dict[str, Any]:
    """The JSON body of a streaming completions request."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt.text,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "repetition_penalty": params.repetition_penalty,
        "stream": True,
        # The prompt's token count arrives in a last, usage-only chunk.
        "stream_options": {"include_usage": True},
        # vLLM drops tokens marked special (all of Orpheus' audio tokens) from `text`.
        "skip_special_tokens": False,
        # The prompt text already starts with <|begin_of_text|>.
        "add_special_tokens": False,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop_token_ids:
        body["stop_token_ids"] = list(params.stop_token_ids)
    return body


class _Dropped(BackendError):
    """The connection failed after the answer's headers; `early`: before the first token."""

    def __init__(self, message: str, replica: Replica, *, early: bool) -> None:
        super().__init__(message)
        self.replica = replica
        self.early = early


class HttpCompletionsEngine:
    """`TokenEngine` over one or more OpenAI-compatible completions servers."""

    name = "http"

    def __init__(
        self,
        base_urls: list[str],
        model: str,
        *,
        api_key: str | None = None,
        connect_timeout: float,
        first_token_timeout: float,
        inter_token_timeout: float,
        batch_tokens: int = 1,
        breaker: BreakerPolicy | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``batch_tokens``: hand tokens over when their count reaches a multiple of this
        (a frame: the end of a generation comes out at once), so the consumer wakes once
        per frame rather than once per token event."""
        urls = [_normalize_base(url) for url in base_urls if url.strip()]
        if not urls:
            raise ValueError("HttpCompletionsEngine needs at least one base URL")
        self.model = model
        self.replicas = ReplicaSet(urls, breaker or BreakerPolicy(), self._replica_ready)
        self._endpoints = {url: Endpoint.of(url + _COMPLETIONS) for url in urls}
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._first_token_timeout = first_token_timeout
        self._inter_token_timeout = inter_token_timeout
        self._batch_tokens = batch_tokens
        self._owns_client = client is None
        # Readiness probes only: the completions streams have connections of their own.
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(connect_timeout))
        self.tokens_received = 0
        """Ids delivered to consumers since start-up, all replicas together."""

    @property
    def in_flight(self) -> dict[str, int]:
        """Open streams per replica base URL."""
        return {replica.url: replica.in_flight for replica in self.replicas.replicas}

    def replica_health(self) -> list[ReplicaHealth]:
        return self.replicas.health()

    async def aclose(self) -> None:
        await self.replicas.aclose()
        if self._owns_client:
            await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        if self._api_key:
            return {"Authorization": f"Bearer {self._api_key}"}
        return {}

    @asynccontextmanager
    async def _open(
        self, body: bytes, events: CompletionEvents, deadline: float
    ) -> AsyncIterator[tuple[Replica, CompletionStream]]:
        """An answered response from a replica in rotation, retrying refusals and resets
        until `deadline`; counts it in flight."""
        failures: dict[str, str] = {}
        attempt = 0
        while True:
            for replica in self.replicas.route():
                async with self._send_to(replica, body, events, deadline, failures) as response:
                    if response is not None:
                        yield replica, response
                        return
            if not await self.replicas.wait_to_retry(attempt, deadline):
                break
            attempt += 1
        reasons = "; ".join(f"{url}: {why}" for url, why in failures.items())
        raise BackendUnavailable(
            "no token backend reachable; retry shortly",
            headers={"Retry-After": str(self.replicas.retry_after())},
            detail=reasons or "every replica is out of rotation",
        )

    @asynccontextmanager
    async def _send_to(
        self,
        replica: Replica,
        body: bytes,
        events: CompletionEvents,
        deadline: float,
        failures: dict[str, str],
    ) -> AsyncIterator[CompletionStream | None]:
        """The replica's answer, or None (failure recorded) when it could not be reached."""
        loop = asyncio.get_running_loop()
        endpoint = self._endpoints[replica.url]
        connect_timeout = max(0.0, min(self._connect_timeout, deadline - loop.time()))
        replica.in_flight += 1
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    response = await CompletionStream.open(
                        endpoint,
                        endpoint.path,
                        body,
                        self._headers(),
                        events,
                        connect_timeout=connect_timeout,
                    )
                    try:
                        await response.response()
                    except BaseException:
                        response.close()
                        raise
            except Unreachable as exc:
                failures[replica.url] = str(exc) or type(exc).__name__
                self.replicas.failed(replica, failures[replica.url])
                yield None
                return
            except TimeoutError:
                raise BackendTimeout(
                    f"token backend did not answer within {self._first_token_timeout:g} s",
                    detail=f"replica {replica.url}",
                ) from None
            answered = response.status < 500
            if answered:
                self.replicas.succeeded(replica)
                replica.serving += 1
            else:
                self.replicas.failed(replica, f"HTTP {response.status}")
            try:
                yield response
            finally:
                if answered:
                    replica.serving -= 1
                # Dropping the connection mid-stream: the backend sees the client leave.
                response.close()
        finally:
            replica.in_flight -= 1

    async def stream(
        self, prompt: Prompt, params: GenerationParams, *, wake: WakeAt | None = None
    ) -> AsyncGenerator[TokenBatch, None]:
        deadline = asyncio.get_running_loop().time() + self._first_token_timeout
        body = orjson.dumps(completion_request_body(self.model, prompt, params))
        attempt = 0
        while True:
            try:
                async with aclosing(self._attempt(body, params, deadline, wake)) as batches:
                    async for batch in batches:
                        yield batch
                return
            except _Dropped as exc:
                self.replicas.failed(exc.replica, exc.message)
                # Before the first token nothing was generated for the client: try again.
                if not exc.early or not await self.replicas.wait_to_retry(attempt, deadline):
                    raise
                attempt += 1

    async def _attempt(
        self, body: bytes, params: GenerationParams, deadline: float, wake: WakeAt | None
    ) -> AsyncGenerator[TokenBatch, None]:
        loop = asyncio.get_running_loop()
        events = CompletionEvents(
            self.model, frozenset(params.stop_token_ids), wake_tokens=self._batch_tokens
        )
        async with self._open(body, events, deadline) as (replica, response):
            if response.status >= 400:
                raise await self._http_error(response, deadline)
            got_token = False
            while True:
                limit = deadline
                wake_at = wake() if wake is not None else None
                if wake_at is not None:
                    limit = min(deadline, loop.time() + wake_at - time.perf_counter())
                woken_by_consumer = limit < deadline
                await response.wait(limit)
                ids = events.take()
                finished = events.finish is not None
                if ids:
                    got_token = True
                    self.tokens_received += len(ids)
                    # Before an error too: what came before it is still the generation's;
                    # and at the end: the last tokens need not wait for the usage chunk.
                    yield TokenBatch(ids)
                if events.error is not None:
                    raise events.error
                if finished:
                    await self._drain(response, events)
                    yield TokenBatch([], finish_reason=events.finish, usage=events.usage)
                    return
                if events.ids or events.finish is not None:
                    deadline = loop.time()  # more came while the consumer ran: take it now
                    continue
                if response.failure is not None:
                    raise self._broken(response.failure, replica, early=not got_token)
                if events.done or response.complete:
                    raise BackendError("backend stream ended without finish_reason")
                now = loop.time()
                if got_token:
                    deadline = response.quiet_since + self._inter_token_timeout
                    if now >= deadline:
                        raise BackendTimeout(
                            "token backend stalled mid-stream: no data for "
                            f"{self._inter_token_timeout:g} s"
                        )
                elif now >= deadline:
                    raise BackendTimeout(
                        f"token backend sent no token within {self._first_token_timeout:g} s"
                    )
                if woken_by_consumer and not ids and now >= limit - _CLOCK_SLACK:
                    yield TokenBatch([])  # a tick: the consumer's time came first

    async def _drain(self, response: CompletionStream, events: CompletionEvents) -> None:
        """Wait briefly for what follows the finish (usage, [DONE]); never fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(_DRAIN_TIMEOUT, self._inter_token_timeout)
        while not (events.done or response.complete or response.failure) and (
            loop.time() < deadline
        ):
            await response.wait(deadline)

    def _broken(self, failure: Exception, replica: Replica, *, early: bool) -> BackendError:
        detail = f"replica {replica.url}: {failure!r}"
        if isinstance(failure, StreamBroken) and "malformed" in str(failure):
            return BackendError("token backend sent a malformed event stream", detail=detail)
        dropped = _Dropped("token backend connection dropped mid-stream", replica, early=early)
        dropped.detail = detail
        return dropped

    async def _http_error(self, response: CompletionStream, deadline: float) -> GatewayError:
        while not (response.complete or response.failure is not None):
            if asyncio.get_running_loop().time() >= deadline:
                break  # the status alone still says what went wrong
            await response.wait(deadline)
        message, param = error_message(bytes(response.error_body))
        return status_error(response.status, message, param, self.model)

    async def ready(self) -> bool:
        """True if at least one replica in rotation lists its models within the connect
        timeout (one whose circuit is open is not asked: it is not taking requests)."""
        urls = [r.url for r in self.replicas.replicas if r.state == "closed"]
        tasks = [asyncio.create_task(self._replica_ready(url)) for url in urls]
        try:
            for next_done in asyncio.as_completed(tasks, timeout=self._connect_timeout):
                if await next_done:
                    return True
        except TimeoutError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return False

    async def _replica_ready(self, url: str) -> bool:
        for path in ("/v1/models", "/health"):
            try:
                response = await self._client.get(
                    f"{url}{path}", headers=self._headers(), timeout=self._connect_timeout
                )
            except httpx.HTTPError:
                return False
            if response.status_code != 404:
                # /health only for servers without a model list.
                return response.status_code == 200
        return False


def _normalize_base(url: str) -> str:
    url = url.strip().rstrip("/")
    if httpx.URL(url).scheme not in ("http", "https"):
        raise ValueError(f"backend URL {url!r} must start with http:// or https://")
    # OpenAI client users often configure `.../v1`; requests add it themselves.
    return url.removesuffix("/v1")
