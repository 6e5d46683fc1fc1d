"""The gateway on a bad day, over real sockets: every backend fault ends in a clear error
to the client, promptly, with the backend request closed and the stream's slot freed."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.audio.pcm import SAMPLES_PER_FRAME
from tests.api.conftest import GatewayStarter, gateway_settings
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape, wait_idle
from tests.support.vllm_server import (
    END_OF_SPEECH,
    FIRST_AUDIO_TOKEN,
    Script,
    VLLMServer,
    orpheus_tokens,
    unused_port_url,
)

FIRST_TOKEN_TIMEOUT = 1.0
INTER_TOKEN_TIMEOUT = 0.5
SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hello there."}


@pytest.fixture(scope="module")
def faulty_gateway(api_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(
        api_vllm, first_token_timeout=FIRST_TOKEN_TIMEOUT, inter_token_timeout=INTER_TOKEN_TIMEOUT
    )


def speech(url: str, timeout: float = 10.0, **fields: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json=SPEECH | fields, timeout=timeout)


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] in ("server_error", "invalid_request_error")
    assert error["message"]
    return dict(error)


def sse_events(url: str, **fields: object) -> list[dict[str, object]]:
    body = SPEECH | {"stream_format": "sse", "response_format": "pcm"} | fields
    with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=10) as response:
        assert response.status_code == 200
        text = response.read().decode()
    return [json.loads(block[len("data: ") :]) for block in text.split("\n\n") if block]


IDLE_TASKS = 4
"""Tasks of an idle gateway's loop: uvicorn's server and lifespan, the scrape itself."""


def assert_clean(url: str, vllm: VLLMServer) -> None:
    """No slot held, no task left behind, every backend request finished or closed."""
    assert wait_idle(url).get("tts_active_streams") == 0
    deadline = time.monotonic() + 2
    while (tasks := scrape(url).get("tts_event_loop_tasks")) > IDLE_TASKS:
        assert time.monotonic() < deadline, f"{tasks} tasks left on the gateway's loop"
        time.sleep(0.02)
    for record in vllm.completions:
        assert record.completed or record.dropped or record.gone.wait(2)


def test_backend_refuses_connection(tiny_snac_dir: Path) -> None:
    with running_gateway(gateway_settings(unused_port_url(), tiny_snac_dir)) as url:
        started = time.monotonic()
        error = assert_envelope(speech(url), 503, "backend_unavailable")
        assert time.monotonic() - started < 3
        assert "no token backend reachable" in str(error["message"])
        ready = httpx.get(f"{url}/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["backend"] == "unavailable"
        assert scrape(url).get("tts_errors_total", cause="backend_unavailable") == 1


@pytest.mark.parametrize(
    ("status", "body", "code", "gateway_status"),
    [
        (400, {"error": {"message": "bad prompt", "type": "BadRequestError", "param": "prompt",
                         "code": 400}}, "bad prompt", 400),
        (500, {"error": {"message": "engine exploded", "type": "InternalServerError",
                         "param": None, "code": 500}}, "engine exploded", 502),
        (503, "upstream maintenance", "upstream maintenance", 502),
    ],
)  # fmt: skip
def test_backend_answers_with_an_error_body(
    faulty_gateway: str,
    vllm: VLLMServer,
    status: int,
    body: object,
    code: str,
    gateway_status: int,
) -> None:
    vllm.push(Script(status=status, body=body))
    response = speech(faulty_gateway)
    assert response.status_code == gateway_status
    assert code in response.json()["error"]["message"]
    assert_clean(faulty_gateway, vllm)


def test_hang_before_first_token_is_a_504(faulty_gateway: str, vllm: VLLMServer) -> None:
    vllm.push(Script(hang_after=0))
    started = time.monotonic()
    assert_envelope(speech(faulty_gateway), 504, "backend_timeout")
    assert time.monotonic() - started < FIRST_TOKEN_TIMEOUT + 1.5
    assert vllm.completions[-1].gone.wait(1.0), "backend request left open after the timeout"
    assert_clean(faulty_gateway, vllm)


def test_stall_mid_stream_aborts_the_audio_transfer(faulty_gateway: str, vllm: VLLMServer) -> None:
    vllm.push(Script(frames=40, hang_after=7 * 6))
    timeouts_before = scrape(faulty_gateway).get("tts_errors_total", cause="backend_timeout")
    started = time.monotonic()
    received = bytearray()
    url = f"{faulty_gateway}/v1/audio/speech"
    body = SPEECH | {"response_format": "pcm"}
    # An incomplete chunked body: the transfer is visibly broken, not a short success.
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", url, json=body) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received.extend(chunk)
    assert time.monotonic() - started < INTER_TOKEN_TIMEOUT + 2
    assert 0 < len(received) < 40 * SAMPLES_PER_FRAME * 2
    assert vllm.completions[-1].gone.wait(1.0)
    assert_clean(faulty_gateway, vllm)
    timeouts = scrape(faulty_gateway).get("tts_errors_total", cause="backend_timeout")
    assert timeouts == timeouts_before + 1  # counted once, though after the commit


def test_stall_mid_stream_ends_sse_with_an_error_event(
    faulty_gateway: str, vllm: VLLMServer
) -> None:
    vllm.push(Script(frames=40, hang_after=7 * 6))
    events = sse_events(faulty_gateway)
    assert events[0]["type"] == "speech.audio.delta"
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "backend_timeout"  # type: ignore[index]
    assert all(e["type"] != "speech.audio.done" for e in events)
    assert_clean(faulty_gateway, vllm)


@pytest.mark.parametrize(
    ("script", "code", "text"),
    [
        (Script(frames=40, drop_after=7 * 6), "backend_error", "connection dropped"),
        (Script(frames=40, malformed_after=7 * 6), "backend_error", "malformed"),
        (Script(frames=40, inband_error_after=7 * 6), "invalid_value", "out-of-vocab"),
    ],
    ids=["drop", "malformed", "inband-error"],
)
def test_mid_stream_faults_end_sse_with_an_error_event(
    faulty_gateway: str, vllm: VLLMServer, script: Script, code: str, text: str
) -> None:
    vllm.push(script)
    events = sse_events(faulty_gateway)
    assert events[0]["type"] == "speech.audio.delta"
    error = events[-1]
    assert error["type"] == "error", events[-1]
    assert text in str(error["error"]["message"])  # type: ignore[index]
    assert_clean(faulty_gateway, vllm)


def test_drop_mid_stream_aborts_the_audio_transfer(faulty_gateway: str, vllm: VLLMServer) -> None:
    vllm.push(Script(frames=40, drop_after=7 * 6))
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST", f"{faulty_gateway}/v1/audio/speech", json=SPEECH | {"response_format": "wav"}
        ) as response,
    ):
        assert response.status_code == 200
        response.read()
    assert_clean(faulty_gateway, vllm)


def test_malformed_sse_before_audio_is_a_502(faulty_gateway: str, vllm: VLLMServer) -> None:
    vllm.push(Script(malformed_after=0))
    error = assert_envelope(speech(faulty_gateway), 502, "backend_error")
    assert "malformed" in str(error["message"])
    assert_clean(faulty_gateway, vllm)


def test_non_audio_tokens_are_skipped_under_resync(faulty_gateway: str, vllm: VLLMServer) -> None:
    good = orpheus_tokens(7, 6)[:-1]
    # Text tokens and a token past the audio range between whole frames.
    tokens = [*good[:14], 1000, 2000, FIRST_AUDIO_TOKEN + 7 * 4096 + 5, *good[14:], END_OF_SPEECH]
    vllm.push(Script(tokens=tokens))
    response = speech(faulty_gateway, response_format="pcm")
    assert response.status_code == 200
    assert len(response.content) == 6 * SAMPLES_PER_FRAME * 2


def test_invalid_tokens_fail_under_fail_policy(api_vllm: VLLMServer, tiny_snac_dir: Path) -> None:
    api_vllm.reset()
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, invalid_token_policy="fail")
    good = orpheus_tokens(7, 6)[:-1]
    with running_gateway(settings) as url:
        # Before any audio: an HTTP error.
        api_vllm.push(Script(tokens=[FIRST_AUDIO_TOKEN + 7 * 4096 + 5, *good, END_OF_SPEECH]))
        response = speech(url, response_format="pcm")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "invalid_audio_tokens"
        # After audio was sent: an SSE error event. (Paced, so the first audio leaves
        # before the bad token arrives: tokens that come together are checked together.)
        api_vllm.push(Script(tokens=[*good, FIRST_AUDIO_TOKEN + 7 * 4096 + 5, *good], delay=0.02))
        events = sse_events(url)
        assert events[-1]["type"] == "error"
        assert events[-1]["error"]["code"] == "invalid_audio_tokens"  # type: ignore[index]
        assert_clean(url, api_vllm)
    api_vllm.reset()


async def test_client_disconnect_closes_backend_request_within_a_second(
    faulty_gateway: str, vllm: VLLMServer
) -> None:
    vllm.push(Script(frames=200, delay=0.01))
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream(
            "POST", f"{faulty_gateway}/v1/audio/speech", json=SPEECH | {"response_format": "pcm"}
        ) as response:
            assert response.status_code == 200
            chunks = response.aiter_bytes()  # kept: closing it would close the response
            assert await anext(chunks)
            streaming = await asyncio.to_thread(scrape, faulty_gateway)
            assert streaming.get("tts_active_streams") == 1
        left = time.monotonic()
    record = vllm.completions[-1]
    assert await record.wait_disconnected(1.0), "gateway kept the backend request open"
    assert record.disconnected_at is not None and record.disconnected_at - left < 1.0
    assert not record.completed
    idle = await asyncio.to_thread(wait_idle, faulty_gateway, 1.0)
    assert idle.get("tts_active_streams") == 0
    assert idle.get("tts_streams_total", outcome="cancelled") >= 1


async def test_client_disconnect_while_backend_is_silent(
    faulty_gateway: str, vllm: VLLMServer
) -> None:
    """Leaving while the gateway waits on the backend (nothing to send) is noticed too."""
    vllm.push(Script(frames=6, hang_after=7 * 2))
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream(
            "POST", f"{faulty_gateway}/v1/audio/speech", json=SPEECH | {"response_format": "pcm"}
        ) as response,
    ):
        async for _ in response.aiter_bytes():
            break
    # Well inside INTER_TOKEN_TIMEOUT would be ideal; the bound is the 1 s of the issue.
    assert await vllm.completions[-1].wait_disconnected(1.0)
    assert (await asyncio.to_thread(wait_idle, faulty_gateway, 1.0)).get("tts_active_streams") == 0


async def _abort_one(host: str, port: int, rng: random.Random, sse: bool) -> None:
    body = json.dumps(
        SPEECH | {"response_format": "pcm", "stream_format": "sse" if sse else "audio"}
    ).encode()
    request = (
        f"POST /v1/audio/speech HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, port)
    try:
        point = rng.random()
        if point < 0.1:  # mid-request: the body never completes
            writer.write(request[: rng.randrange(1, len(request))])
            await writer.drain()
        else:
            writer.write(request)
            await writer.drain()
            wanted = rng.randrange(0, 60_000)
            got = 0
            async with asyncio.timeout(rng.uniform(0.0, 0.3)):
                while got < wanted:
                    data = await reader.read(65536)
                    if not data:
                        break
                    got += len(data)
    except TimeoutError:
        pass
    finally:
        writer.transport.abort()  # RST, like a killed client


def _resources(url: str, tasks_at_most: float = float("inf")) -> tuple[float, float, float]:
    """Tasks, fds and RSS once the gateway is idle: no slot held, and requests still
    queued before admission (aborted clients' handlers) given time to finish."""
    deadline = time.monotonic() + 15
    current = wait_idle(url, 10.0)
    while current.get("tts_event_loop_tasks") > tasks_at_most and time.monotonic() < deadline:
        time.sleep(0.1)
        current = wait_idle(url, 10.0)
    return (
        current.get("tts_event_loop_tasks"),
        current.get("process_open_fds"),
        current.get("process_resident_memory_bytes"),
    )


def _connections_to(port: int) -> int:
    """Established TCP connections of this process whose remote end is `port` (Linux)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


CONCURRENCY = 24


def test_random_aborts_leak_nothing(faulty_gateway: str, vllm: VLLMServer) -> None:
    vllm.default_script = lambda body: Script(frames=20, delay=0.001)
    host, port = faulty_gateway.removeprefix("http://").split(":")
    rng = random.Random(1234)

    async def run(count: int) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with gate:
                await _abort_one(host, int(port), rng, sse=i % 4 == 0)

        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(run(200))  # warm-up: pools, caches, lazily built objects
    time.sleep(0.5)
    tasks0, fds0, rss0 = _resources(faulty_gateway)
    gc.collect()
    blocks0 = sys.getallocatedblocks()
    started = time.monotonic()
    asyncio.run(run(1000))
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    tasks1, fds1, rss1 = _resources(faulty_gateway, tasks_at_most=tasks0 + 2)
    vllm.requests.clear()  # the recorder's own history is not the gateway's memory
    gc.collect()
    blocks1 = sys.getallocatedblocks()
    assert tasks1 <= tasks0 + 2, (tasks0, tasks1)
    # A request cancelled while httpcore sets up its connection must not orphan that
    # connection in the pool (encode/httpcore#1093): the engine must not cancel `send`.
    backend_port = int(vllm.url.rsplit(":", 1)[1])
    left_open = _connections_to(backend_port)
    assert left_open <= 4, f"{left_open} backend connections left open"
    assert fds1 <= fds0 + 8, (fds0, fds1)
    # A leaked stream holds hundreds of objects; bounded caches grow by a few per request.
    assert blocks1 - blocks0 < 50 * 1000, (blocks0, blocks1)
    assert rss1 - rss0 < 64 * 2**20, (rss0, rss1)
    # Every backend request the gateway opened was finished or closed by it.
    open_requests = [
        r for r in vllm.completions if not (r.completed or r.dropped or r.gone.wait(1.0))
    ]
    assert not open_requests
    assert elapsed < 60
    # The gateway still serves normally afterwards.
    vllm.default_script = None
    response = speech(faulty_gateway, response_format="pcm")
    assert response.status_code == 200 and response.content


def test_complete_file_failure_is_an_http_error_counted_once(
    faulty_gateway: str, vllm: VLLMServer
) -> None:
    before = scrape(faulty_gateway).get("tts_errors_total", cause="backend_error")
    vllm.push(Script(frames=40, drop_after=7 * 6))
    response = speech(faulty_gateway, stream=False, response_format="wav")
    assert_envelope(response, 502, "backend_error")
    assert_clean(faulty_gateway, vllm)
    after = scrape(faulty_gateway).get("tts_errors_total", cause="backend_error")
    assert after == before + 1
