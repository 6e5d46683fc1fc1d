"""Token engine over OpenAI-compatible `/v1/completions` streaming (vLLM first).

One pooled `httpx.AsyncClient` serves every replica. Each request goes to the
least busy replica in rotation (app/engine/replicas.py: a circuit breaker per
replica). A refusal or reset before the first token is retried on another
replica, or the same one after a short back-off, until the first-token deadline:
nothing has been generated yet. Once tokens flow, a replica's answer (or error)
is final. Every wait has a deadline, and closing the stream closes the HTTP
response so the backend stops generating.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import httpx

from app.engine.base import FinishReason, GenerationParams, Prompt, TokenBatch
from app.engine.replicas import BreakerPolicy, Replica, ReplicaHealth, ReplicaSet
from app.engine.sse import SSEError, SSEParser
from app.engine.token_text import TokenTextParser
from app.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    InvalidRequest,
    Overloaded,
)

# Failures that happen before a replica answered: safe to try the next replica.
_UNREACHABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
)
_MAX_ERROR_BODY = 64 * 1024
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


def _error_message(body: bytes) -> tuple[str, str | None]:
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


def _status_error(status: int, message: str, param: str | None, model: str) -> GatewayError:
    if status in (400, 413, 422):
        return InvalidRequest(message, param=param)
    if status in (401, 403):
        return BackendError(
            f"token backend rejected the gateway's credentials (HTTP {status}); "
            f"check TTS_API_KEY: {message}"
        )
    if status == 404:
        return BackendError(
            f"token backend does not serve model {model!r} (HTTP 404); "
            f"check MODEL_NAME and TTS_API: {message}"
        )
    if status == 429:
        return Overloaded(f"token backend is overloaded (HTTP 429): {message}")
    return BackendError(f"token backend failed (HTTP {status}): {message}")


def _inband_error(error: Any, model: str) -> GatewayError:
    if not isinstance(error, dict):
        return BackendError(f"token backend failed mid-stream: {error}")
    message, param = _envelope_message({"error": error}, json.dumps(error))
    code = error.get("code")
    status = code if isinstance(code, int) else 500
    if isinstance(code, str) and code.isdigit():
        status = int(code)
    return _status_error(status, message, param, model)


class _Dropped(BackendError):
    """The connection failed after the answer's headers; `early`: before the first token."""

    def __init__(self, message: str, replica: Replica, *, early: bool) -> None:
        super().__init__(message)
        self.replica = replica
        self.early = early


class _EventReader:
    """SSE `data` payloads from a response body, each wait bounded by a deadline."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_bytes()
        self._parser = SSEParser()
        self._pending: list[str] = []
        self._eof = False

    async def next(self, deadline: float) -> str | None:
        """The next event's data, or None at end of body; TimeoutError past `deadline`."""
        while not self._pending:
            if self._eof:
                return None
            async with asyncio.timeout_at(deadline):
                try:
                    chunk = await anext(self._chunks)
                except StopAsyncIteration:
                    self._eof = True
                    self._pending.extend(self._parser.close())
                    continue
            self._pending.extend(self._parser.feed(chunk))
        return self._pending.pop(0)


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
        breaker: BreakerPolicy | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        urls = [_normalize_base(url) for url in base_urls if url.strip()]
        if not urls:
            raise ValueError("HttpCompletionsEngine needs at least one base URL")
        self.model = model
        self.replicas = ReplicaSet(urls, breaker or BreakerPolicy(), self._replica_ready)
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._first_token_timeout = first_token_timeout
        self._inter_token_timeout = inter_token_timeout
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            # Reads are bounded by our own first-token / inter-token deadlines.
            timeout=httpx.Timeout(connect_timeout, read=None),
            # Admission control upstream bounds concurrency; the pool must not.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self._abandoned: set[asyncio.Future[Any]] = set()
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

    async def _send_detached(self, request: httpx.Request) -> httpx.Response:
        """`client.send(stream=True)` in a task of its own.

        Cancelling httpcore while it sets up a pooled connection orphans that
        connection in the pool, socket open, forever (encode/httpcore#1093). So a
        caller that is cancelled (client gone, deadline) abandons the send instead:
        it ends by itself within the request's own timeouts, and a response that
        arrives meanwhile is closed at once.
        """
        task = asyncio.ensure_future(self._client.send(request, stream=True))
        try:
            return await asyncio.shield(task)
        except BaseException:
            if task.done():
                if not task.cancelled() and task.exception() is None:
                    await task.result().aclose()
            else:
                self._abandoned.add(task)
                task.add_done_callback(self._close_abandoned)
            raise

    def _close_abandoned(self, task: asyncio.Future[httpx.Response]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is None:
            closing = asyncio.ensure_future(task.result().aclose())
            self._abandoned.add(closing)  # a task needs a reference until it is done
            closing.add_done_callback(self._abandoned.discard)

    def _headers(self) -> dict[str, str]:
        if self._api_key:
            return {"Authorization": f"Bearer {self._api_key}"}
        return {}

    @asynccontextmanager
    async def _open(
        self, body: dict[str, Any], deadline: float
    ) -> AsyncIterator[tuple[Replica, httpx.Response]]:
        """An answered response from a replica in rotation, retrying refusals and resets
        until `deadline`; counts it in flight."""
        failures: dict[str, str] = {}
        attempt = 0
        while True:
            for replica in self.replicas.route():
                async with self._send_to(replica, body, deadline, failures) as response:
                    if response is not None:
                        yield replica, response
                        return
            if not await self.replicas.wait_to_retry(attempt, deadline):
                break
            attempt += 1
        reasons = "; ".join(f"{url}: {why}" for url, why in failures.items())
        retry = self.replicas.retry_after()
        raise BackendUnavailable(
            "no token backend reachable: " + (reasons or "every replica is out of rotation"),
            headers={"Retry-After": str(retry)},
        )

    @asynccontextmanager
    async def _send_to(
        self, replica: Replica, body: dict[str, Any], deadline: float, failures: dict[str, str]
    ) -> AsyncIterator[httpx.Response | None]:
        """The replica's answer, or None (failure recorded) when it could not be reached."""
        request = self._client.build_request(
            "POST",
            f"{replica.url}/v1/completions",
            json=body,
            headers=self._headers(),
            # Bounds an abandoned send (see _send_detached); live reads have our deadlines.
            timeout=httpx.Timeout(
                self._connect_timeout,
                read=max(self._first_token_timeout, self._inter_token_timeout) + 1.0,
            ),
        )
        replica.in_flight += 1
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._send_detached(request)
            except _UNREACHABLE as exc:
                failures[replica.url] = _describe(exc)
                self.replicas.failed(replica, failures[replica.url])
                yield None
                return
            except (TimeoutError, httpx.TimeoutException):
                raise BackendTimeout(
                    f"token backend {replica.url} did not answer within "
                    f"{self._first_token_timeout:g} s"
                ) from None
            except httpx.TransportError as exc:
                raise BackendError(
                    f"token backend {replica.url} request failed: {_describe(exc)}"
                ) from exc
            answered = response.status_code < 500
            if answered:
                self.replicas.succeeded(replica)
                replica.serving += 1
            else:
                self.replicas.failed(replica, f"HTTP {response.status_code}")
            try:
                yield response
            finally:
                if answered:
                    replica.serving -= 1
                # Closing mid-stream drops the connection: the backend sees the client leave.
                await response.aclose()
        finally:
            replica.in_flight -= 1

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[TokenBatch, None]:
        deadline = asyncio.get_running_loop().time() + self._first_token_timeout
        body = completion_request_body(self.model, prompt, params)
        attempt = 0
        while True:
            try:
                async with aclosing(self._attempt(body, params, deadline)) as batches:
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
        self, body: dict[str, Any], params: GenerationParams, deadline: float
    ) -> AsyncGenerator[TokenBatch, None]:
        loop = asyncio.get_running_loop()
        stop_ids = frozenset(params.stop_token_ids)
        async with self._open(body, deadline) as (replica, response):
            if response.status_code >= 400:
                raise await self._http_error(response, deadline)
            reader = _EventReader(response)
            text = TokenTextParser()
            got_token = False
            while True:
                if got_token:
                    deadline = loop.time() + self._inter_token_timeout
                try:
                    data = await self._read(reader, deadline, got_token)
                except httpx.TransportError as exc:
                    raise _Dropped(
                        f"token backend connection dropped mid-stream: {_describe(exc)}",
                        replica,
                        early=not got_token,
                    ) from exc
                if data is None or data.strip() == "[DONE]":
                    break
                ids, finish = self._decode(data, text)
                if finish is not None:
                    ids.extend(text.close())
                ids = [i for i in ids if i not in stop_ids]
                if finish is None and not ids:
                    continue
                got_token = True
                self.tokens_received += len(ids)
                yield TokenBatch(ids, finish_reason=finish)
                if finish is not None:
                    await _drain(
                        reader, loop.time() + min(_DRAIN_TIMEOUT, self._inter_token_timeout)
                    )
                    return
            raise BackendError("backend stream ended without finish_reason")

    async def _read(self, reader: _EventReader, deadline: float, got_token: bool) -> str | None:
        try:
            return await reader.next(deadline)
        except TimeoutError:
            if got_token:
                raise BackendTimeout(
                    f"token backend stalled mid-stream: no data for {self._inter_token_timeout:g} s"
                ) from None
            raise BackendTimeout(
                f"token backend sent no token within {self._first_token_timeout:g} s"
            ) from None
        except SSEError as exc:
            raise BackendError(f"token backend sent a malformed event stream: {exc}") from exc

    def _decode(self, data: str, text: TokenTextParser) -> tuple[list[int], FinishReason | None]:
        """Token ids and finish reason of one completion chunk; raises on errors."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise BackendError(f"token backend sent malformed JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise BackendError(f"token backend sent an unexpected event: {data[:200]!r}")
        if "error" in chunk:
            raise _inband_error(chunk["error"], self.model)
        choices = chunk.get("choices")
        if not choices:
            return [], None  # usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise BackendError(f"token backend sent an unexpected choice: {data[:200]!r}")
        token_ids = choice.get("token_ids")
        if token_ids is not None:
            if not isinstance(token_ids, list) or not all(isinstance(i, int) for i in token_ids):
                raise BackendError(f"token backend sent invalid token_ids: {token_ids!r}")
            ids = list(token_ids)
        else:
            delta = choice.get("text")
            ids = text.feed(delta) if isinstance(delta, str) else []
        return ids, _finish_reason(choice.get("finish_reason"))

    async def _http_error(self, response: httpx.Response, deadline: float) -> GatewayError:
        body = bytearray()
        try:
            async with asyncio.timeout_at(deadline):
                async for part in response.aiter_bytes():
                    body.extend(part)
                    if len(body) > _MAX_ERROR_BODY:
                        break
        except (TimeoutError, httpx.TransportError):
            pass  # the status alone still says what went wrong
        message, param = _error_message(bytes(body))
        return _status_error(response.status_code, message, param, self.model)

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


def _finish_reason(value: Any) -> FinishReason | None:
    if value is None:
        return None
    if value in ("stop", "length"):
        return "stop" if value == "stop" else "length"
    raise BackendError(f"token backend ended the generation with finish_reason {value!r}")


async def _drain(reader: _EventReader, deadline: float) -> None:
    """Read the rest (usage, [DONE]) so the connection can be reused; never fails."""
    try:
        while (data := await reader.next(deadline)) is not None:
            if data.strip() == "[DONE]":
                return
    except (TimeoutError, httpx.HTTPError, SSEError):
        return


def _normalize_base(url: str) -> str:
    url = url.strip().rstrip("/")
    if httpx.URL(url).scheme not in ("http", "https"):
        raise ValueError(f"backend URL {url!r} must start with http:// or https://")
    # OpenAI client users often configure `.../v1`; requests add it themselves.
    return url.removesuffix("/v1")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
