"""Clients that stop reading, over real sockets: the stream is ended after
CLIENT_STALL_TIMEOUT, its backend request closed and its slot freed; a client that
reads at playback pace, however slowly its socket drains, is never cut off."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from tests.api.conftest import GatewayStarter
from tests.support.metrics import scrape
from tests.support.vllm_server import Script, VLLMServer

STALL = 3.0
LONG = 8000
"""Frames of a stream far longer than the socket buffers (4 MB on Linux: 90 s of PCM),
sent at a pace the gateway keeps up with, so the backend is still sending when the
stall is noticed."""
PACE = 3000.0
BYTES_PER_SECOND = SAMPLE_RATE * 2


@pytest.fixture(scope="module")
def backend() -> Iterator[VLLMServer]:
    with VLLMServer(max_model_len=1_000_000) as server:
        yield server


@pytest.fixture(scope="module")
def url(backend: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(
        backend,
        client_stall_timeout=STALL,
        max_concurrent_streams=2,
        max_model_len=1_000_000,  # room in the context for LONG
    )


@pytest.fixture
def vllm(backend: VLLMServer) -> Iterator[VLLMServer]:
    yield from backend.fresh()


def open_stream(url: str, body: dict[str, object], *, rcvbuf: int = 4096) -> socket.socket:
    """A request on a socket with a small receive buffer, as a stalled client has."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/audio/speech HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def speech(frames: int, **fields: object) -> dict[str, object]:
    return {
        "model": "tts-1",
        "voice": "tara",
        "input": "A long story.",
        "response_format": "pcm",
        "max_tokens": 7 * frames + 7,
    } | fields


def active(url: str) -> float:
    return scrape(url).get("tts_active_streams")


def wait_for(predicate: object, seconds: float) -> float:
    """Seconds until `predicate()` held; fails after `seconds`."""
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - started < seconds, "condition not reached in time"
        time.sleep(0.05)
    return time.monotonic() - started


def read_rest(sock: socket.socket, seconds: float = 5.0) -> tuple[bytes, bool]:
    """What is left on the socket, and whether the connection ended in a reset."""
    sock.settimeout(seconds)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return bytes(data), True
    return bytes(data), False


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_a_client_that_stops_reading_loses_its_stream(
    url: str, vllm: VLLMServer, stream_format: str
) -> None:
    vllm.push(Script(frames=LONG, pace=PACE), Script(frames=LONG, pace=PACE))
    stalled = [open_stream(url, speech(LONG, stream_format=stream_format)) for _ in range(2)]
    try:
        for sock in stalled:
            assert sock.recv(12)  # the response started, then the client stops reading
        assert active(url) == 2
        freed = wait_for(lambda: active(url) == 0, STALL + 20)
        # Not ended by anything else than the stall: it took at least the timeout.
        assert freed >= STALL - 1.0
        for record in vllm.completions:
            assert record.gone.wait(2), "the backend request was left open"
        assert scrape(url).get("tts_errors_total", cause="client_stalled") >= 2
        for sock in stalled:
            rest, reset = read_rest(sock)
            # Dropped, not ended cleanly: no last chunk, or a reset.
            assert reset or not rest.endswith(b"0\r\n\r\n")
    finally:
        for sock in stalled:
            sock.close()
    # The slots serve others again.
    vllm.push(Script(frames=12))
    with contextlib.closing(open_stream(url, speech(12))) as sock:
        body, _ = read_rest(sock)
    assert body.startswith(b"HTTP/1.1 200") and body.endswith(b"0\r\n\r\n")


def test_a_client_reading_at_playback_pace_is_never_cut_off(url: str, vllm: VLLMServer) -> None:
    frames = 120  # about 10 s of audio, generated far faster than that
    vllm.push(Script(frames=frames))
    stalls = scrape(url).get("tts_errors_total", cause="client_stalled")
    seconds = frames * SAMPLES_PER_FRAME / SAMPLE_RATE
    step = 0.05
    received = bytearray()
    with contextlib.closing(open_stream(url, speech(frames))) as sock:
        sock.settimeout(STALL * 3)
        started = time.monotonic()
        while not received.endswith(b"0\r\n\r\n"):
            # A player: take what a step of playback needs, no more, then wait for it.
            want = round(BYTES_PER_SECOND * step)
            chunk = sock.recv(want)
            if not chunk:
                break
            received += chunk
            ahead = len(received) / BYTES_PER_SECOND - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(min(ahead, step))
        elapsed = time.monotonic() - started
    head, _, _ = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert received.endswith(b"0\r\n\r\n"), "the stream was cut off"
    assert len(received) > frames * SAMPLES_PER_FRAME * 2
    # It really was read at playback pace, so the server waited on it again and again.
    assert elapsed > seconds * 0.8
    assert scrape(url).get("tts_errors_total", cause="client_stalled") == stalls
