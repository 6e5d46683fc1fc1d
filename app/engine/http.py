"""Token engine over OpenAI-compatible `/v1/completions` streaming (vLLM first).

Each request goes to the least busy replica and fails over when a replica cannot be
reached; once a replica answers, its answer (or error) is final. The stream runs on a
lean connection of its own (`completion_stream`), its events are read by
`CompletionEvents`; every wait has a deadline, and closing the stream drops the
connection so the backend stops generating. Readiness probes use httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.engine.backend_errors import error_message, status_error
from app.engine.base import GenerationParams, Prompt, TokenBatch
from app.engine.completion_events import CompletionEvents
from app.engine.completion_stream import CompletionStream, Endpoint, StreamBroken, Unreachable
from app.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
)

_DRAIN_TIMEOUT = 2.0


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


class _Replica:
    def __init__(self, url: str) -> None:
        self.url = url
        self.endpoint = Endpoint.of(f"{url}/v1/completions")
        self.in_flight = 0


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
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``batch_tokens``: hand tokens over in batches of at least this many (the end of
        a generation comes out at once), so the consumer wakes once per batch rather than
        once per token event."""
        urls = [_normalize_base(url) for url in base_urls if url.strip()]
        if not urls:
            raise ValueError("HttpCompletionsEngine needs at least one base URL")
        self.model = model
        self._replicas = [_Replica(url) for url in urls]
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._first_token_timeout = first_token_timeout
        self._inter_token_timeout = inter_token_timeout
        self._batch_tokens = batch_tokens
        self._next = 0
        self._owns_client = client is None
        # Readiness probes only: the completions streams have connections of their own.
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(connect_timeout))
        self.tokens_received = 0
        """Ids delivered to consumers since start-up, all replicas together."""

    @property
    def in_flight(self) -> dict[str, int]:
        """Open streams per replica base URL."""
        return {replica.url: replica.in_flight for replica in self._replicas}

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        if self._api_key:
            return {"Authorization": f"Bearer {self._api_key}"}
        return {}

    def _route(self) -> list[_Replica]:
        """Replicas to try in order: fewest open streams first, round-robin on ties."""
        count = len(self._replicas)
        start = self._next
        self._next = (self._next + 1) % count
        order = sorted(
            range(count), key=lambda i: (self._replicas[i].in_flight, (i - start) % count)
        )
        return [self._replicas[i] for i in order]

    @asynccontextmanager
    async def _open(
        self, body: bytes, events: CompletionEvents, deadline: float
    ) -> AsyncIterator[CompletionStream]:
        """An answered response from the first reachable replica; counts it in flight."""
        failures: list[str] = []
        loop = asyncio.get_running_loop()
        for replica in self._route():
            replica.in_flight += 1
            try:
                try:
                    async with asyncio.timeout_at(deadline):
                        response = await CompletionStream.open(
                            replica.endpoint,
                            replica.endpoint.path,
                            body,
                            self._headers(),
                            events,
                            connect_timeout=min(self._connect_timeout, deadline - loop.time()),
                        )
                        try:
                            await response.response()
                        except BaseException:
                            response.close()
                            raise
                except Unreachable as exc:
                    failures.append(f"{replica.url}: {exc}")
                    continue
                except TimeoutError:
                    raise BackendTimeout(
                        f"token backend {replica.url} did not answer within "
                        f"{self._first_token_timeout:g} s"
                    ) from None
                try:
                    yield response
                finally:
                    # Dropping the connection mid-stream: the backend sees the client leave.
                    response.close()
                return
            finally:
                replica.in_flight -= 1
        raise BackendUnavailable("no token backend reachable: " + "; ".join(failures))

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[TokenBatch, None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_token_timeout
        body = json.dumps(completion_request_body(self.model, prompt, params)).encode()
        events = CompletionEvents(
            self.model, frozenset(params.stop_token_ids), wake_tokens=self._batch_tokens
        )
        async with self._open(body, events, deadline) as response:
            if response.status >= 400:
                raise await self._http_error(response, deadline)
            got_token = False
            while True:
                await response.wait(deadline)
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
                    raise self._broken(response.failure)
                if events.done or response.complete:
                    raise BackendError("backend stream ended without finish_reason")
                now = loop.time()
                if got_token:
                    deadline = response.last_data + self._inter_token_timeout
                    if now >= deadline:
                        raise BackendTimeout(
                            "token backend stalled mid-stream: no data for "
                            f"{self._inter_token_timeout:g} s"
                        )
                elif now >= deadline:
                    raise BackendTimeout(
                        f"token backend sent no token within {self._first_token_timeout:g} s"
                    )

    async def _drain(self, response: CompletionStream, events: CompletionEvents) -> None:
        """Wait briefly for what follows the finish (usage, [DONE]); never fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(_DRAIN_TIMEOUT, self._inter_token_timeout)
        while not (events.done or response.complete or response.failure) and (
            loop.time() < deadline
        ):
            await response.wait(deadline)

    def _broken(self, failure: Exception) -> BackendError:
        if isinstance(failure, StreamBroken) and "malformed" in str(failure):
            return BackendError(f"token backend sent a malformed event stream: {failure}")
        return BackendError(f"token backend connection dropped mid-stream: {failure}")

    async def _http_error(self, response: CompletionStream, deadline: float) -> GatewayError:
        while not (response.complete or response.failure is not None):
            if asyncio.get_running_loop().time() >= deadline:
                break  # the status alone still says what went wrong
            await response.wait(deadline)
        message, param = error_message(bytes(response.error_body))
        return status_error(response.status, message, param, self.model)

    async def ready(self) -> bool:
        """True if at least one replica lists its models within the connect timeout."""
        tasks = [asyncio.create_task(self._replica_ready(r.url)) for r in self._replicas]
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


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
