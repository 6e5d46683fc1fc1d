"""A scriptable vLLM-compatible completions server on loopback, for tests.

Real HTTP (uvicorn in a background thread) with vLLM 0.32's wire format: the
chunk JSON has the captured field order and compact separators, events end with
a blank line, the stream ends with `data: [DONE]`, errors use vLLM's bodies
(see /work/shared/reference/vllm-*.txt). Each request takes the next queued
`Script` (or a callable building one from the request body); without one it
streams deterministic Orpheus audio frames then stops at end-of-speech.

Every request is recorded (body, headers, and whether and when the client went
away before the response was complete) so fault tests can check what the
backend observed.

    with VLLMServer() as server:
        server.push(Script(tokens=[128266, 132362], delay=0.01))
        ... POST {server.url}/v1/completions ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn

CUSTOM_TOKEN_BASE = 128256
END_OF_SPEECH = 128258
FIRST_AUDIO_TOKEN = 128266
FINGERPRINT = "vllm-0.32.0-5178684f"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Script:
    """How the server answers one completions request.

    Fault positions count generated elements already sent ("after k tokens"); 0 means
    before the first one.
    """

    tokens: Sequence[int | str] | None = None
    """Token ids, or text pieces sent verbatim as one delta each; None: Orpheus frames."""
    frames: int | None = None
    """Frames of the default script (None: the server's `frames`)."""
    per_delta: int = 1
    """Elements per delta (vLLM sends 1; llama.cpp or SGLang may batch)."""
    chunk_chars: int | None = None
    """Re-slice the concatenated text into deltas of this many characters (split tokens)."""
    write_bytes: int | None = None
    """Send the SSE bytes in writes of this size (events split across reads)."""
    crlf: bool = False
    headers_delay: float = 0.0
    first_delay: float = 0.0
    delay: float = 0.0
    pace: float | None = None
    """Elements per second on a fixed schedule from the first delta (no drift from late
    wake-ups, unlike `delay`); replaces `delay` between deltas."""
    status: int | None = None
    """Answer with this HTTP status and `body` instead of streaming."""
    body: Any = None
    inband_error_after: int | None = None
    inband_error: dict[str, Any] | None = None
    drop_after: int | None = None
    """Close the connection abruptly (no terminating chunk, no [DONE])."""
    hang_after: int | None = None
    """Send nothing more until the client goes away."""
    pause_after: int | None = None
    """Stop for `pause` seconds once, then go on (a stall of the generation)."""
    pause: float = 0.0
    malformed_after: int | None = None
    """Insert a data line that is not JSON, then go on normally."""
    finish: bool = True
    """False: no chunk carries a finish_reason (the stream still ends with [DONE])."""
    finish_reason: str | None = None
    """Override the finish reason (e.g. "abort")."""
    done: bool = True
    """False: end the body without `data: [DONE]`."""
    return_token_ids: bool | None = None
    """Fill `token_ids` (None: as the request's `return_token_ids` asks)."""
    include_usage: bool | None = None
    """Send the usage-only chunk (None: as the request's `stream_options` ask)."""


ScriptSource = Script | Callable[[dict[str, Any]], Script]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float
    """time.monotonic() when the request body was complete."""
    disconnected_at: float | None = None
    """time.monotonic() when the client went away before the response was complete."""
    completed: bool = False
    completed_at: float | None = None
    """time.monotonic() when the whole response was sent."""
    dropped: bool = False
    gone: threading.Event = field(default_factory=threading.Event)

    async def wait_disconnected(self, seconds: float) -> bool:
        """Wait (without blocking the caller's event loop) until the client went away."""
        return await asyncio.to_thread(self.gone.wait, seconds)


def orpheus_tokens(seed: int, frames: int) -> list[int]:
    """Valid audio tokens (7 per frame, slot offsets applied) then end-of-speech."""
    rng = random.Random(seed)
    tokens = [
        FIRST_AUDIO_TOKEN + slot * 4096 + rng.randrange(4096)
        for _ in range(frames)
        for slot in range(7)
    ]
    return [*tokens, END_OF_SPEECH]


def token_text(token_id: int, *, skip_special: bool) -> str:
    if token_id >= CUSTOM_TOKEN_BASE:
        # The Orpheus vocabulary marks custom tokens special: vLLM drops them by default.
        return "" if skip_special else f"<custom_token_{token_id - CUSTOM_TOKEN_BASE}>"
    return f" w{token_id}"


def unused_port_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _error(message: str, type_: str, param: str | None, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Stream:
    """One streaming response: pacing, disconnect watching, SSE framing."""

    def __init__(self, server: VLLMServer, send: Send, record: RecordedRequest, script: Script):
        self.server = server
        self.send = send
        self.record = record
        self.script = script
        self.gone = asyncio.Event()
        self.completing = False
        self.malformed_sent = False
        self.paused = False

    async def watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        if not self.completing:
            self.record.disconnected_at = time.monotonic()
            self.record.gone.set()
            self.gone.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep; False if the client left meanwhile."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        return not self.gone.is_set()

    async def hang(self) -> None:
        while not self.gone.is_set() and not self.server.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), 0.05)

    async def event(self, payload: bytes) -> None:
        end = b"\r\n\r\n" if self.script.crlf else b"\n\n"
        data = b"data: " + payload + end
        size = self.script.write_bytes or len(data)
        for start in range(0, len(data), size):
            await self.send(
                {
                    "type": "http.response.body",
                    "body": data[start : start + size],
                    "more_body": True,
                }
            )
            if self.script.write_bytes:
                await asyncio.sleep(0.001)

    async def finish(self) -> None:
        self.completing = True
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        self.record.completed = True
        self.record.completed_at = time.monotonic()


class VLLMServer:
    def __init__(
        self,
        *,
        model: str = "tinyorpheus",
        frames: int = 12,
        max_model_len: int = 2048,
        api_key: str | None = None,
        port: int = 0,
    ) -> None:
        self.model = model
        self._requested_port = port
        self.max_model_len = max_model_len
        self._defaults = (frames, api_key)
        self.frames = frames
        self.api_key = api_key
        self.scripts: deque[ScriptSource] = deque()
        self.default_script: Callable[[dict[str, Any]], Script] | None = None
        self.requests: list[RecordedRequest] = []
        self.stopping = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *scripts: ScriptSource) -> None:
        self.scripts.extend(scripts)

    def reset(self) -> None:
        self.scripts.clear()
        self.requests.clear()
        self.default_script = None
        self.frames, self.api_key = self._defaults

    def fresh(self) -> Iterator[Self]:
        """For a per-test fixture (``yield from server.fresh()``): this server with no
        leftover scripts or recordings, and none left behind for the next test."""
        self.reset()
        yield self
        self.reset()

    @property
    def completions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/completions"]

    # --- lifecycle ---
    def start(self, port: int = 0) -> Self:
        """Serve on loopback at `port` (0: any free port)."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port or self._requested_port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="critical",
            access_log=False,
            lifespan="off",
            interface="asgi3",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self.stopping = False
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test vLLM server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self.stopping = True
        self._server.should_exit = True
        self._thread.join(5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- ASGI ---
    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
            received_at=time.monotonic(),
        )
        self.requests.append(record)
        path, method = scope["path"], scope["method"]
        if path == "/v1/completions" and method == "POST":
            await self._completions(receive, send, record)
            return
        if path == "/v1/models" and method == "GET":
            if not self._authorized(record):
                await self._respond(send, 401, {"error": "Unauthorized"})
            else:
                await self._respond(send, 200, self._models())
        elif path == "/health" and method == "GET":
            await self._respond(send, 200, b"")
        elif path in ("/v1/completions", "/v1/models", "/health"):
            await self._respond(send, 405, {"detail": "Method Not Allowed"})
        else:
            await self._respond(send, 404, {"detail": "Not Found"})
        record.completed = True

    def _authorized(self, record: RecordedRequest) -> bool:
        if self.api_key is None:
            return True
        return record.headers.get("authorization") == f"Bearer {self.api_key}"

    def _models(self) -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": self.model,
                    "parent": None,
                    "max_model_len": self.max_model_len,
                    "permission": [
                        {
                            "id": f"modelperm-{secrets.token_hex(16)}",
                            "object": "model_permission",
                            "created": created,
                            "allow_create_engine": False,
                            "allow_sampling": True,
                            "allow_logprobs": True,
                            "allow_search_indices": False,
                            "allow_view": True,
                            "allow_fine_tuning": False,
                            "organization": "*",
                            "group": None,
                            "is_blocking": False,
                        }
                    ],
                }
            ],
        }

    @staticmethod
    async def _respond(send: Send, status: int, body: Any) -> None:
        if isinstance(body, bytes | str):
            data = body.encode() if isinstance(body, str) else body
            content_type = b"text/plain; charset=utf-8"
        else:
            data, content_type = _json(body), b"application/json"
        headers = [(b"content-type", content_type), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    def _rejection(self, record: RecordedRequest) -> tuple[int, Any] | None:
        """vLLM's answer to a request it refuses before generating, if any."""
        body = record.body
        if not self._authorized(record):
            return 401, {"error": "Unauthorized"}
        if not isinstance(body, dict):
            return 400, _error("JSON decode error", "BadRequestError", None, 400)
        model = body.get("model")
        if model is not None and model != self.model:
            message = f"The model `{model}` does not exist. Valid aliases: {self.model}."
            return 404, _error(message, "NotFoundError", "model", 404)
        prompt = body.get("prompt")
        if not prompt:
            message = (
                "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)"
            )
            return 400, _error(message, "BadRequestError", "prompt", 400)
        # Without a tokenizer, one character stands for one token.
        length = len(prompt)
        if length > self.max_model_len:
            message = (
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"your prompt contains at least {length} input tokens, which exceeds this limit "
                "even without any output tokens. Please reduce the length of the input prompt. "
                f"(parameter=input_tokens, value={length})"
            )
            return 400, _error(message, "BadRequestError", "input_tokens", 400)
        return None

    def _script_for(self, body: dict[str, Any]) -> Script:
        source: ScriptSource | None = self.scripts.popleft() if self.scripts else None
        if source is None:
            source = self.default_script or Script()
        return source(body) if callable(source) else source

    async def _completions(self, receive: Receive, send: Send, record: RecordedRequest) -> None:
        rejection = self._rejection(record)
        if rejection is not None:
            await self._respond(send, *rejection)
            record.completed = True
            return
        body: dict[str, Any] = record.body
        script = self._script_for(body)
        stream = _Stream(self, send, record, script)
        watcher = asyncio.create_task(stream.watch(receive))
        try:
            await self._run(stream, body)
        finally:
            watcher.cancel()

    async def _run(self, stream: _Stream, body: dict[str, Any]) -> None:
        script, record = stream.script, stream.record
        if not await stream.sleep(script.headers_delay):
            return
        if script.status is not None:
            stream.completing = True
            await self._respond(stream.send, script.status, script.body)
            record.completed = True
            return
        plan = self._plan(script, body)
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await stream.send({"type": "http.response.start", "status": 200, "headers": headers})
        include_usage = (
            script.include_usage
            if script.include_usage is not None
            else bool((body.get("stream_options") or {}).get("include_usage"))
        )
        cid, created = f"cmpl-{secrets.token_hex(8)}", int(time.time())
        prompt_ids: list[int] | None = (
            [ord(c) % CUSTOM_TOKEN_BASE for c in body["prompt"]] if plan.return_ids else None
        )

        def chunk(text: str, ids: list[int] | None, finish: str | None, reason: Any) -> bytes:
            nonlocal prompt_ids
            data: dict[str, Any] = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": finish,
                        "stop_reason": reason,
                        "prompt_token_ids": prompt_ids,
                        "token_ids": ids if plan.return_ids else None,
                    }
                ],
            }
            prompt_ids = None
            if finish is not None and not include_usage:
                data["system_fingerprint"] = FINGERPRINT
            return _json(data)

        sent = 0
        paced_from = 0.0
        for index, (text, ids, count) in enumerate(plan.deltas):
            if not await self._faults(stream, sent):
                return
            if index == 0:
                wait = script.first_delay
            elif script.pace:
                wait = paced_from + sent / script.pace - time.monotonic()
            else:
                wait = script.delay
            if not await stream.sleep(wait):
                return
            if index == 0:
                paced_from = time.monotonic()
            last = index == len(plan.deltas) - 1 and plan.finish_on_last
            finish = plan.finish if last else None
            await stream.event(chunk(text, ids, finish, None))
            sent += count
        if not await self._faults(stream, sent):
            return
        if (
            plan.deltas
            and not plan.finish_on_last
            and plan.finish is not None
            and not await stream.sleep(script.delay)
        ):
            return
        if plan.finish is not None and not plan.finish_on_last:
            await stream.event(chunk("", [], plan.finish, plan.stop_reason))
        if include_usage:
            completion = sum(count for _, _, count in plan.deltas)
            prompt_tokens = len(body["prompt"])
            usage = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": self.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens + completion,
                    "completion_tokens": completion,
                },
                "system_fingerprint": FINGERPRINT,
            }
            await stream.event(_json(usage))
        if script.done:
            await stream.event(b"[DONE]")
        await stream.finish()

    async def _faults(self, stream: _Stream, sent: int) -> bool:
        """Apply the script's faults due after `sent` elements; False: stop streaming."""
        script = stream.script
        if stream.gone.is_set():
            return False
        if script.drop_after is not None and sent >= script.drop_after:
            # Returning without the final body makes uvicorn close the connection mid-body.
            stream.completing = True
            stream.record.dropped = True
            return False
        if script.hang_after is not None and sent >= script.hang_after:
            await stream.hang()
            return False
        if script.pause_after is not None and sent >= script.pause_after and not stream.paused:
            stream.paused = True
            if not await stream.sleep(script.pause):
                return False
        if script.inband_error_after is not None and sent >= script.inband_error_after:
            error = script.inband_error or _error(
                "allowed_token_ids contains out-of-vocab token id! "
                "(parameter=allowed_token_ids, value=[999999])",
                "BadRequestError",
                "allowed_token_ids",
                400,
            )
            # vLLM writes in-band errors with json.dumps' default separators.
            await stream.event(json.dumps(error).encode())
            await stream.event(b"[DONE]")
            await stream.finish()
            return False
        if script.malformed_after is not None and sent >= script.malformed_after:
            if stream.malformed_sent:
                return True
            stream.malformed_sent = True
            await stream.event(b'{"id":"cmpl-0123456789abcdef","object":"text_compl')
        return True

    def _plan(self, script: Script, body: dict[str, Any]) -> _Plan:
        if script.tokens is not None:
            elements: Sequence[int | str] = script.tokens
        else:
            seed = body.get("seed")
            if not isinstance(seed, int):
                seed = zlib.crc32(str(body.get("prompt")).encode())
            elements = orpheus_tokens(seed, script.frames or self.frames)
        stop_ids = set(body.get("stop_token_ids") or [])
        skip_special = body.get("skip_special_tokens", True) is not False
        max_tokens = body.get("max_tokens")
        limit = max_tokens if isinstance(max_tokens, int) else 16
        content: list[int | str] = []
        finish: str | None = "stop"
        stop_reason: int | None = None
        for element in elements:
            if isinstance(element, int) and element in stop_ids:
                stop_reason = element
                break
            content.append(element)
            if len(content) >= limit:
                finish = "length"
                break
        if script.finish_reason is not None:
            finish = script.finish_reason
        if not script.finish:
            finish = None
        return_ids = (
            script.return_token_ids
            if script.return_token_ids is not None
            else bool(body.get("return_token_ids"))
        )

        def text_of(element: int | str) -> str:
            if isinstance(element, str):
                return element
            return token_text(element, skip_special=skip_special)

        deltas: list[tuple[str, list[int] | None, int]] = []
        if script.chunk_chars:
            joined = "".join(text_of(e) for e in content)
            size = script.chunk_chars
            deltas = [(joined[i : i + size], None, 0) for i in range(0, len(joined), size)]
            if deltas:
                last_text, _, _ = deltas[-1]
                deltas[-1] = (last_text, None, len(content))
        else:
            step = max(1, script.per_delta)
            for i in range(0, len(content), step):
                group = content[i : i + step]
                ids = [e for e in group if isinstance(e, int)]
                deltas.append(("".join(text_of(e) for e in group), ids, len(group)))
        # vLLM puts "length" on the chunk of the last token and "stop" on an extra empty chunk.
        finish_on_last = bool(deltas) and finish not in (None, "stop")
        return _Plan(deltas, finish, stop_reason, finish_on_last, return_ids)


@dataclass
class _Plan:
    deltas: list[tuple[str, list[int] | None, int]]
    finish: str | None
    stop_reason: int | None
    finish_on_last: bool
    return_ids: bool
