"""One request as a voice agent's WebSocket session, observed the way its client sees it.

The session is opened, configured, and the text written into it word by word at an LLM's
pace (`RequestSpec.words_per_second`; 0: all at once), then ended; audio is recorded as it
arrives, into the same `Exchange` an HTTP response fills, so `measure` reads both alike.

- `ws`: `/v1/audio/speech/stream`, the gateway's own protocol: `session.update`, one
  `input_text.append` per word, `input_text.done`; served at `session.done`.
- `deepgram`: `/v1/speak`: the settings in the query, one `Speak` per word, `Flush` and
  `Close`; served at `Flushed`.

A voice agent waits for its reply's first sentence, so the time the message completing that
sentence left is recorded too (`Exchange.sentence_sent`). The client finds the sentence's end
as the gateway would for ordinary prose: the first word ending in . ! ? or … that is not a
title or Latin abbreviation, an initial or a list number; text without one is complete at
its end (`input_text.done`, `Flush`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from stress_test.corpus import Text
from stress_test.exchange import Exchange, RequestSpec, error_of

ENDPOINTS = frozenset({"ws", "deepgram"})
NATIVE_PATH = "/v1/audio/speech/stream"
DEEPGRAM_PATH = "/v1/speak"
ACCEPTED = 101
NORMAL_CLOSURE = 1000
ABNORMAL_CLOSURE = 1006
"""What websockets reports for a connection that ended without a close frame."""
_HEADER_BYTES = 8
"""Native binary frames: little-endian uint32 segment and sequence, then audio."""
_MAX_MESSAGE_BYTES = 16 * 2**20
_FINAL = re.compile(r"[.!?…][\"'”’)\]]*$")
_CLOSERS = "\"'”’)]"
_OPENERS = "\"'“‘(["
_TITLES = frozenset(("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "vs"))
"""Always followed by a name: never the end of a sentence."""
_MAYBE_LAST = frozenset(("etc", "approx", "inc", "ltd", "co"))


def pieces(text: str, words_per_second: float) -> list[str]:
    """What is sent, in order: each word with its space after it (as LiveKit's Deepgram
    plugin sends them), or the whole text in one message when not paced."""
    words = text.split()
    if words_per_second <= 0:
        return [" ".join(words) + " "]
    return [word + " " for word in words]


def ends_sentence(word: str, following: str | None) -> bool:
    """Does `word` end a sentence, `following` (None: nothing) coming next?"""
    if not _FINAL.search(word):
        return False
    core = word.rstrip(_CLOSERS)
    if core[-1] != ".":
        return core[-1] != "…"  # the segmenter goes on past a "…"
    stem = core.rstrip(".").lstrip(_OPENERS)
    if stem.lower() in _TITLES or (len(stem) == 1 and stem.isalpha()) or stem.isdigit():
        return False
    if core.endswith("..") or "." in stem or stem.lower() in _MAYBE_LAST:
        # "...", e.g., a.m., U.S., etc.: an end only where a sentence starts next.
        return following is None or following.lstrip(_OPENERS)[:1].isupper()
    return True


def first_sentence_end(sent: Sequence[str]) -> int | None:
    """Index of the piece that completes the first sentence; None: only the end does."""
    words = [(index, word) for index, piece in enumerate(sent) for word in piece.split()]
    for position, (index, word) in enumerate(words):
        following = words[position + 1][1] if position + 1 < len(words) else None
        if ends_sentence(word, following):
            return index
    return None


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def deepgram_audio(extra: Mapping[str, Any]) -> tuple[str, int]:
    """(encoding, sample rate) asked of `/v1/speak`: linear16 at 24 kHz unless `extra`
    says otherwise (G.711's rate defaults to 8 kHz, as the gateway's does). ValueError for
    a rate that is not a number."""
    encoding = str(extra.get("encoding", "linear16"))
    default = 24_000 if encoding == "linear16" else 8_000
    return encoding, int(extra.get("sample_rate", default))


def deepgram_query(spec: RequestSpec, voice: str) -> dict[str, str]:
    """`model` is the voice (a Deepgram model name the gateway maps, or its own name)."""
    encoding, rate = deepgram_audio(spec.extra)
    query = {"model": voice, **spec.extra, "encoding": encoding, "sample_rate": rate}
    return {key: _query_value(value) for key, value in query.items()}


def received_audio(spec: RequestSpec, pcm_rate: int) -> tuple[str, int]:
    """(format for `measure.audio_track`, sample rate) of what the requests get back."""
    if spec.endpoint != "deepgram":
        return spec.response_format, pcm_rate
    encoding, rate = deepgram_audio(spec.extra)
    return ("pcm" if encoding == "linear16" else encoding), rate


def ws_base(url: str) -> str:
    return re.sub(r"^http", "ws", url.rstrip("/"), count=1)


class _Protocol(ABC):
    """How one of the two protocols opens, writes, ends and reads a session."""

    auth_scheme: str

    @abstractmethod
    def url(self, base: str, spec: RequestSpec, voice: str) -> str: ...

    def opening(self, spec: RequestSpec, voice: str) -> list[dict[str, Any]]:
        return []

    @abstractmethod
    def text(self, piece: str) -> dict[str, Any]: ...

    @abstractmethod
    def closing(self) -> list[dict[str, Any]]: ...

    def audio(self, frame: bytes) -> bytes:
        return frame

    @abstractmethod
    def event(self, event: Mapping[str, Any], exchange: Exchange) -> bool:
        """Handle one JSON message; True when it says the request has been served."""


class _Native(_Protocol):
    auth_scheme = "Bearer"

    def url(self, base: str, spec: RequestSpec, voice: str) -> str:
        return base + NATIVE_PATH

    def opening(self, spec: RequestSpec, voice: str) -> list[dict[str, Any]]:
        update = {"voice": voice, "response_format": spec.response_format, **spec.extra}
        return [{"type": "session.update", **update}]

    def text(self, piece: str) -> dict[str, Any]:
        return {"type": "input_text.append", "text": piece}

    def closing(self) -> list[dict[str, Any]]:
        return [{"type": "input_text.done"}]

    def audio(self, frame: bytes) -> bytes:
        return frame[_HEADER_BYTES:]

    def event(self, event: Mapping[str, Any], exchange: Exchange) -> bool:
        kind = event.get("type")
        if kind == "audio.delta":
            exchange.received(base64.b64decode(event["audio"], validate=True))
        elif kind == "error":
            error = event.get("error") or {}
            cause = error.get("code") or error.get("type") or "error_message"
            exchange.fail(str(cause), str(error.get("message", "")), in_band=True)
        return kind == "session.done"


class _Deepgram(_Protocol):
    auth_scheme = "Token"

    def url(self, base: str, spec: RequestSpec, voice: str) -> str:
        return f"{base}{DEEPGRAM_PATH}?{urlencode(deepgram_query(spec, voice))}"

    def text(self, piece: str) -> dict[str, Any]:
        return {"type": "Speak", "text": piece}

    def closing(self) -> list[dict[str, Any]]:
        return [{"type": "Flush"}, {"type": "Close"}]

    def event(self, event: Mapping[str, Any], exchange: Exchange) -> bool:
        kind = event.get("type")
        # A Warning means a message was dropped: its text was never spoken.
        if kind in ("Error", "Warning"):
            prefix = "err" if kind == "Error" else "warn"
            code = event.get(f"{prefix}_code") or event.get("code") or kind
            message = event.get(f"{prefix}_msg") or event.get("description") or ""
            exchange.fail(str(code).lower(), str(message), in_band=True)
        return kind == "Flushed"


PROTOCOLS: dict[str, _Protocol] = {"ws": _Native(), "deepgram": _Deepgram()}


async def converse(
    url: str, api_key: str | None, limit: float, spec: RequestSpec, text: Text, voice: str
) -> Exchange:
    """One session for `text`, bounded by `limit` seconds in all."""
    exchange = Exchange(text, voice, started=time.perf_counter())
    protocol = PROTOCOLS[spec.endpoint]
    headers = {"Authorization": f"{protocol.auth_scheme} {api_key}"} if api_key else {}
    try:
        async with (
            asyncio.timeout(limit),
            connect(
                protocol.url(ws_base(url), spec, voice),
                additional_headers=headers,
                open_timeout=min(limit, 10.0),
                max_size=_MAX_MESSAGE_BYTES,
            ) as socket,
        ):
            exchange.status = ACCEPTED
            await _session(socket, protocol, spec, exchange)
    except TimeoutError:
        exchange.fail("timeout", f"the session took longer than {limit:g} s")
    except InvalidStatus as exc:
        response = exc.response
        exchange.status = response.status_code
        exchange.fail(*error_of(response.status_code, bytes(response.body or b"")))
    except (OSError, InvalidHandshake) as exc:
        exchange.fail("connect_error", f"{type(exc).__name__}: {exc}")
    if not exchange.ended:
        exchange.ended = time.perf_counter() - exchange.started
    return exchange


async def _session(
    socket: ClientConnection, protocol: _Protocol, spec: RequestSpec, exchange: Exchange
) -> None:
    sender = asyncio.create_task(_send(socket, protocol, spec, exchange))
    try:
        served, code, reason = await _receive(socket, protocol, exchange)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    exchange.close_code = code
    if code != NORMAL_CLOSURE:
        exchange.fail(f"close_{code}", reason or "the session was closed", in_band=True)
    elif not served:
        exchange.fail("incomplete_stream", "closed before all the text was spoken", in_band=True)


async def _send(
    socket: ClientConnection, protocol: _Protocol, spec: RequestSpec, exchange: Exchange
) -> None:
    """The session's messages, the text on a fixed schedule (no drift from late wake-ups)."""
    sent = pieces(exchange.text.text, spec.words_per_second)
    sentence_end = first_sentence_end(sent)
    try:
        for message in protocol.opening(spec, exchange.voice):
            await socket.send(json.dumps(message))
        start = time.perf_counter()
        for index, piece in enumerate(sent):
            if spec.words_per_second > 0:
                await asyncio.sleep(start + index / spec.words_per_second - time.perf_counter())
            await socket.send(json.dumps(protocol.text(piece)))
            if index == sentence_end:
                exchange.sentence_sent = time.perf_counter() - exchange.started
        for message in protocol.closing():
            await socket.send(json.dumps(message))
        if exchange.sentence_sent is None:
            exchange.sentence_sent = time.perf_counter() - exchange.started
    except ConnectionClosed:
        pass  # the gateway ended the session: the receiving side records why


async def _receive(
    socket: ClientConnection, protocol: _Protocol, exchange: Exchange
) -> tuple[bool, int, str]:
    """Read until the gateway closes: (served, close code, close reason)."""
    served = False
    while True:
        try:
            message = await socket.recv()
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return served, ABNORMAL_CLOSURE, ""
            return served, closed.rcvd.code, closed.rcvd.reason
        if isinstance(message, bytes):
            exchange.received(protocol.audio(message))
            continue
        try:
            event = json.loads(message)
            done = isinstance(event, dict) and protocol.event(event, exchange)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            detail = f"{type(exc).__name__}: {message[:120]}"
            exchange.fail("malformed_message", detail, in_band=True)
            continue
        if done and not served:
            served = True
            exchange.ended = time.perf_counter() - exchange.started
