"""One synthesis request over HTTP (or, for the WebSocket endpoints, handed to `ws`),
observed the way a listener's client sees it.

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
from typing import Any

import httpx

from stress_test import ws
from stress_test.corpus import Text
from stress_test.exchange import Endpoint, Exchange, RequestSpec, error_of

PATHS: dict[Endpoint, str] = {"speech": "/v1/audio/speech", "vc": "/v1/audio/vc"}


class GatewayClient:
    """A pooled HTTP client for one gateway; every request gets its own connection slot."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 300.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.api_key = api_key
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
        if spec.endpoint in ws.ENDPOINTS:
            return await ws.converse(self.url, self.api_key, self.timeout, spec, text, voice)
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


async def _read_audio(response: httpx.Response, exchange: Exchange) -> None:
    async for chunk in response.aiter_bytes():
        exchange.received(chunk)


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
            exchange.received(base64.b64decode(event["audio"], validate=True))
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
