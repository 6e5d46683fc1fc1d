"""SIGTERM against a real gateway process: stop admitting, fail /ready, let live streams
finish — or abort them cleanly at SHUTDOWN_GRACE_SECONDS — then exit."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.api.draining import Drain, ShuttingDown
from tests.support.gateway_process import GatewayProcess, backend_env
from tests.support.vllm_server import Script, VLLMServer

SPEECH = {"model": "tts-1", "voice": "tara", "input": "A long answer.", "response_format": "pcm"}
BYTES_PER_FRAME = 2048 * 2  # pcm s16le


@pytest.fixture
def backend() -> Iterator[VLLMServer]:
    with VLLMServer() as server:
        yield server


class LiveStream:
    """One streamed synthesis read in a thread: its bytes, events and how it ended."""

    def __init__(self, url: str, body: dict[str, object]) -> None:
        self.url, self.body = url, body
        self.data = bytearray()
        self.events: list[dict[str, object]] = []
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with httpx.stream("POST", f"{self.url}/v1/audio/speech", json=self.body,
                              timeout=30) as response:  # fmt: skip
                assert response.status_code == 200, response.read()
                for line in response.iter_lines() if self.body.get("stream_format") else ():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
                        self.started.set()
                for chunk in response.iter_bytes():
                    self.data.extend(chunk)
                    self.started.set()
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()

    def join(self, seconds: float) -> None:
        self.thread.join(seconds)
        assert not self.thread.is_alive(), "the stream did not end"


def test_sigterm_drains_live_streams_then_exits(
    backend: VLLMServer, tmp_path: Path, tiny_snac_dir: Path
) -> None:
    frames = 24  # about 2 s of paced generation
    backend.default_script = lambda body: Script(frames=frames, delay=1 / 82)
    env = backend_env(backend.url, tiny_snac_dir, tmp_path, SHUTDOWN_GRACE_SECONDS="20")
    with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        stream = LiveStream(gateway.url, SPEECH)
        assert stream.started.wait(10) and stream.error is None
        gateway.terminate()
        time.sleep(0.3)
        ready = httpx.get(f"{gateway.url}/ready", timeout=5)
        assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
        refused = httpx.post(f"{gateway.url}/v1/audio/speech", json=SPEECH, timeout=5)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "shutting_down"
        stream.join(20)
        assert stream.error is None
        assert len(stream.data) == frames * BYTES_PER_FRAME  # every frame, nothing cut
        assert gateway.wait(15) in (0, -15), gateway.log()
        assert backend.completions[0].completed


def test_streams_past_the_grace_period_are_aborted_cleanly(
    backend: VLLMServer, tmp_path: Path, tiny_snac_dir: Path
) -> None:
    backend.default_script = lambda body: Script(frames=400, delay=1 / 82)  # ~34 s
    env = backend_env(backend.url, tiny_snac_dir, tmp_path, SHUTDOWN_GRACE_SECONDS="1")
    with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        sse = LiveStream(gateway.url, {**SPEECH, "stream_format": "sse"})
        audio = LiveStream(gateway.url, SPEECH)
        assert sse.started.wait(10) and audio.started.wait(10)
        signalled = time.monotonic()
        gateway.terminate()
        sse.join(10)
        audio.join(10)
        assert gateway.wait(15) in (0, -15), gateway.log()
        took = time.monotonic() - signalled
    # SSE: the last event says why; audio: a broken transfer, never a short "complete" body.
    last = sse.events[-1]
    assert last["type"] == "error", last
    assert last["error"]["code"] == "shutting_down"  # type: ignore[index]
    assert isinstance(audio.error, httpx.RemoteProtocolError)
    assert 1.0 <= took < 10.0
    # Both backend requests were closed, not left generating.
    assert all(r.disconnected_at is not None for r in backend.completions)


async def _slow_source(closed: list[str]) -> AsyncIterator[bytes]:
    try:
        yield b"first"
        await asyncio.sleep(60)
        yield b"never"
    finally:
        closed.append("source")


async def test_an_abort_ends_a_waiting_stream_with_shutting_down() -> None:
    drain = Drain(grace=0.0, live_streams=lambda: 1)
    closed: list[str] = []
    got: list[bytes] = []

    async def read() -> None:
        async for item in drain.abortable(_slow_source(closed)):
            got.append(item)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)  # it waits in the source for the second item
    drain._abort_readers()
    with pytest.raises(ShuttingDown):
        await reader
    assert got == [b"first"] and closed == ["source"]
    assert reader.cancelling() == 0  # the abort's cancellation was taken back, not leaked
    with pytest.raises(ShuttingDown):  # a stream that asks after the abort ends at once
        await anext(drain.abortable(_slow_source([])))


async def test_a_cancellation_that_is_not_the_drains_stays_a_cancellation() -> None:
    drain = Drain(grace=60.0, live_streams=lambda: 1)
    closed: list[str] = []

    async def read() -> list[bytes]:
        return [item async for item in drain.abortable(_slow_source(closed))]

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    reader.cancel()  # the client left
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert closed == ["source"] and not drain.aborting.is_set()
