"""One synthesis request over HTTP, observed the way a listener's client sees it.

Only the bytes and their arrival times are recorded here; turning them into audio seconds,
first audio and stalls happens afterwards (`measure`), so decoding never slows the event
loop that is timing other streams.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from stress_test.corpus import Text

Endpoint = Literal["speech", "vc"]
StreamFormat = Literal["audio", "sse"]
PATHS: dict[Endpoint, str] = {"speech": "/v1/audio/speech", "vc": "/v1/audio/vc"}


@dataclass(frozen=True)
class Reference:
    """The clip and transcript sent with every `vc` request."""

    audio: bytes
    filename: str
    text: str


@dataclass(frozen=True)
class RequestSpec:
    """What every request of a run asks for, apart from its text and voice."""

    endpoint: Endpoint = "speech"
    model: str = "tts-1"
    response_format: str = "pcm"
    stream: bool = True
    stream_format: StreamFormat = "audio"
    extra: Mapping[str, Any] = field(default_factory=dict)
    reference: Reference | None = None


@dataclass
class Exchange:
    """One request as the client saw it; times are seconds since the request was sent."""

    text: Text
    voice: str
    started: float
    """time.perf_counter() when the request was sent."""
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(time, audio bytes received so far) per body chunk or SSE delta carrying audio."""
    audio: bytearray = field(default_factory=bytearray)
    ended: float = 0.0
    status: int | None = None
    cause: str | None = None
    """Why it failed: the error envelope's code, or what went wrong on the wire."""
    message: str | None = None
    in_band: bool = False
    """The failure came after the response was committed (an SSE `error` event)."""

    def fail(self, cause: str, message: str, *, in_band: bool = False) -> None:
        if self.cause is None:
            self.cause, self.message, self.in_band = cause, message, in_band


def error_of(status: int, body: bytes) -> tuple[str, str]:
    """(cause, message) of an error response: the OpenAI envelope's code where there is one."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"http_{status}", body[:200].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else f"http_{status}", str(error.get("message", ""))
    return f"http_{status}", json.dumps(data)[:200]


class GatewayClient:
    """A pooled HTTP client for one gateway; every request gets its own connection slot."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 300.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0), pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def models(self) -> dict[str, Any]:
        """The gateway's `GET /v1/models` answer, recorded with every run."""
        try:
            response = await self._http.get("/v1/models")
        except httpx.HTTPError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:1000]
        return {"status": response.status_code, "body": body}

    async def wait_ready(self, seconds: float) -> bool:
        """Poll `/health` until the gateway has loaded its models (or `seconds` pass)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                response = await self._http.get("/health", timeout=5.0)
                status = response.json().get("status") if response.status_code == 200 else None
                if response.status_code == 200 and status != "starting":
                    return True
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(1.0)

    async def synthesize(self, spec: RequestSpec, text: Text, voice: str) -> Exchange:
        exchange = Exchange(text, voice, started=time.perf_counter())
        try:
            # httpx's timeouts bound each read; this bounds the whole request.
            async with asyncio.timeout(self.timeout):
                await self._exchange(spec, exchange)
        except TimeoutError:
            exchange.fail("timeout", f"the request took longer than {self.timeout:g} s")
        except httpx.TimeoutException as exc:
            exchange.fail("timeout", f"{type(exc).__name__}: {exc}")
        except httpx.ConnectError as exc:
            exchange.fail("connect_error", str(exc))
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # After a 200 the gateway aborts the transfer to signal a failure mid-stream.
            cause = "stream_aborted" if exchange.status == 200 else "connection_error"
            exchange.fail(cause, f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            exchange.fail(type(exc).__name__, str(exc))
        finally:
            exchange.ended = time.perf_counter() - exchange.started
        return exchange

    async def _exchange(self, spec: RequestSpec, exchange: Exchange) -> None:
        payload = _payload(spec, exchange.text.text, exchange.voice)
        async with self._http.stream("POST", PATHS[spec.endpoint], **payload) as response:
            exchange.status = response.status_code
            if response.status_code != 200:
                exchange.fail(*error_of(response.status_code, await response.aread()))
            elif response.headers.get("content-type", "").startswith("text/event-stream"):
                await _read_sse(response, exchange)
            else:
                await _read_audio(response, exchange)


def _payload(spec: RequestSpec, text: str, voice: str) -> dict[str, Any]:
    common: dict[str, Any] = {
        "model": spec.model,
        "response_format": spec.response_format,
        "stream": spec.stream,
        "stream_format": spec.stream_format,
    }
    if spec.endpoint == "speech":
        return {"json": {**common, "input": text, "voice": voice, **spec.extra}}
    if spec.reference is None:
        raise ValueError("the vc endpoint needs a reference clip and its transcript")
    fields = {**common, **spec.extra, "reference_text": spec.reference.text, "generate_text": text}
    form = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in fields.items()
    }
    files = {"reference_audio": (spec.reference.filename, spec.reference.audio)}
    return {"data": form, "files": files}


def _received(exchange: Exchange, data: bytes) -> None:
    if data:
        exchange.audio.extend(data)
        exchange.arrivals.append((time.perf_counter() - exchange.started, len(exchange.audio)))


async def _read_audio(response: httpx.Response, exchange: Exchange) -> None:
    async for chunk in response.aiter_bytes():
        _received(exchange, chunk)


async def _read_sse(response: httpx.Response, exchange: Exchange) -> None:
    done = False
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:
            continue
        done = _event("\n".join(data), exchange) or done
        data = []
    if data:
        done = _event("\n".join(data), exchange) or done
    if not done:
        exchange.fail("incomplete_stream", "the event stream ended without a done event")


def _event(payload: str, exchange: Exchange) -> bool:
    """Handle one SSE event; True when it ends the stream successfully."""
    if payload == "[DONE]":
        return True
    try:
        event = json.loads(payload)
        kind = event.get("type")
        if kind == "speech.audio.delta":
            _received(exchange, base64.b64decode(event["audio"], validate=True))
            return False
        if kind == "speech.audio.done":
            return True
        if kind == "error":
            error = event.get("error") or {}
            cause = error.get("code") or error.get("type") or "error_event"
            exchange.fail(str(cause), str(error.get("message", "")), in_band=True)
            return False
    except (ValueError, KeyError, AttributeError, binascii.Error) as exc:
        exchange.fail("malformed_event", f"{type(exc).__name__}: {payload[:120]}", in_band=True)
        return False
    return False
