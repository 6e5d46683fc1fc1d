"""WebSocket sessions under pressure: a client that reads nothing, silence, admission,
rate limits and the shutdown drain — over real sockets, against the real gateway."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.api.conftest import GatewayStarter
from tests.support.gateway_process import GatewayProcess, backend_env
from tests.support.metrics import wait_idle
from tests.support.vllm_server import Script, VLLMServer
from tests.support.ws import Received, connect, read_until, send, ws_url

PATH = "/v1/audio/speech/stream"
SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hi.", "response_format": "pcm"}


@pytest.fixture
def backend() -> Iterator[VLLMServer]:
    with VLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def base(api_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(
        api_vllm,
        ws_send_timeout_seconds=2.0,
        ws_idle_timeout_seconds=1.0,
        ws_keepalive_seconds=0.3,
    )


def whole_budget(body: dict[str, Any]) -> Script:
    """As much audio as each segment's budget allows, at once: far faster than real time."""
    return Script(frames=body["max_tokens"] // 7)


async def test_a_client_that_reads_nothing_stalls_only_its_own_session(
    base: str, vllm: VLLMServer
) -> None:
    vllm.default_script = whole_budget
    text = " ".join(
        f"This is sentence number {n} of a long reply, said slowly." for n in range(150)
    )
    host, port = urlsplit(base).hostname, urlsplit(base).port
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
    sock.connect((host, port))
    async with connect(ws_url(base, PATH), sock=sock, max_queue=1, close_timeout=1) as ws:
        await send(ws, type="session.update", response_format="pcm")
        await send(ws, type="input_text.append", text=text)
        await send(ws, type="input_text.flush")
        await asyncio.sleep(1.5)  # not one recv()
        # About 60 segments of ~20 s each wait; only those the socket's buffers took (the
        # kernel's send buffer grows to 4 MiB here) and the one generated ahead were asked
        # for: the session waits on the socket.
        assert 1 <= len(vllm.completions) <= 8
        # The rest of the gateway is unaffected meanwhile.
        response = await asyncio.to_thread(
            httpx.post, f"{base}/v1/audio/speech", json=SPEECH, timeout=10
        )
        assert response.status_code == 200 and response.content
        # After WS_SEND_TIMEOUT_SECONDS with no send completing, the session ends and
        # frees its slot, though the client never read a byte.
        assert wait_idle(base, 10).get("tts_active_streams") == 0
        requested = [r for r in vllm.completions if r.body["prompt"].count("sentence")]
        assert len(requested) <= 8
        assert all(r.completed or r.gone.wait(1.0) for r in requested)


async def test_keepalives_then_the_idle_timeout(base: str, vllm: VLLMServer) -> None:
    got = Received()
    started = time.monotonic()
    async with connect(ws_url(base, PATH)) as ws:
        await send(ws, type="session.update")
        error = await read_until(ws, got, "error", within=5)
        await read_until(ws, got, "never")
    took = time.monotonic() - started
    assert len(got.of("keepalive")) >= 2
    assert error is not None and error["error"]["code"] == "idle_timeout"
    assert got.close_code == 1000 and got.close_reason == "idle timeout"
    assert 1.0 <= took < 4.0


async def test_a_client_keepalive_and_work_keep_the_session_open(
    base: str, vllm: VLLMServer
) -> None:
    vllm.default_script = lambda body: Script(frames=30, delay=0.01)  # ~2 s: twice the timeout
    got = Received()
    async with connect(ws_url(base, PATH)) as ws:
        for _ in range(4):
            await send(ws, type="keepalive")
            await asyncio.sleep(0.4)
        await send(ws, type="input_text.append", text="Slowly generated. ")
        await send(ws, type="input_text.done")
        # Generation takes longer than the idle timeout: a busy session is not idle.
        await read_until(ws, got, "never", within=30)
    assert got.types()[-1] == "session.done" and got.close_code == 1000
    assert not got.of("error")


@pytest.fixture(scope="module")
def one_slot(api_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(api_vllm, max_concurrent_streams=1, rate_limit_per_minute=4)


async def test_a_session_holds_a_stream_slot_and_handshakes_are_rate_limited(
    one_slot: str, vllm: VLLMServer
) -> None:
    url = ws_url(one_slot, PATH)
    async with connect(url) as ws:
        await send(ws, type="session.update")
        assert await read_until(ws, Received(), "session.ready")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        response = refused.value.response
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert b"too_many_streams" in response.body
        speech = await asyncio.to_thread(
            httpx.post, f"{one_slot}/v1/audio/speech", json=SPEECH, timeout=10
        )
        assert speech.status_code == 503
    wait_idle(one_slot)
    with pytest.raises(InvalidStatus) as limited:
        for _ in range(4):  # the budget of 4 per minute is spent by now
            async with connect(url):
                pass
    assert limited.value.response.status_code == 429


def test_sigterm_closes_idle_sessions_at_once_and_busy_ones_at_the_grace_period(
    tmp_path: Path, tiny_snac_dir: Path, backend: VLLMServer
) -> None:
    backend.default_script = lambda body: Script(frames=400, delay=1 / 82)  # ~34 s
    env = backend_env(backend.url, tiny_snac_dir, tmp_path, SHUTDOWN_GRACE_SECONDS="2")

    async def session(url: str, text: str | None, ready: asyncio.Event) -> tuple[Received, float]:
        got = Received()
        async with connect(ws_url(url, PATH)) as ws:
            await send(ws, type="session.update")
            await read_until(ws, got, "session.ready")
            if text is not None:
                await send(ws, type="input_text.append", text=text)
                await read_until(ws, got, "<binary>")
            ready.set()
            await signalled.wait()
            started = time.monotonic()
            await read_until(ws, got, "never", within=15)
        return got, time.monotonic() - started

    async def run(gateway: GatewayProcess) -> list[tuple[Received, float]]:
        ready = [asyncio.Event(), asyncio.Event()]
        sessions = [
            asyncio.create_task(session(gateway.url, None, ready[0])),
            asyncio.create_task(session(gateway.url, "A long answer. ", ready[1])),
        ]
        await asyncio.gather(*(event.wait() for event in ready))
        gateway.terminate()
        signalled.set()
        return await asyncio.gather(*sessions)

    signalled = asyncio.Event()
    with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        (idle, idle_took), (busy, busy_took) = asyncio.run(run(gateway))
        assert gateway.wait(15) in (0, -15), gateway.log()
    for got in (idle, busy):
        assert got.of("error")[-1]["error"]["code"] == "shutting_down"
        assert got.close_code == 1012
    assert idle_took < 1.5  # an idle session has nothing to finish
    assert 1.5 <= busy_took < 6.0  # the busy one had until the grace period
    assert all(r.disconnected_at is not None for r in backend.completions)
