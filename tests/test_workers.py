"""`WORKERS=2`: two gateway processes on one port whose /metrics add up, rate limits that
are per worker (as documented), and a SIGTERM that takes every process down cleanly."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, backend_env
from tests.support.metrics import Scrape
from tests.support.vllm_server import Script, VLLMServer

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hello there.", "response_format": "pcm"}
STREAMS = 8
# One key per synthesis, so that the rate limit (per key, per worker) never refuses them.
KEYS = [f"key-{n}" for n in range(STREAMS)]
LIMITED = {"Authorization": "Bearer limited"}


@pytest.fixture(scope="module")
def backend() -> Iterator[VLLMServer]:
    with VLLMServer() as server:
        # Paced, so that streams overlap and both workers take some.
        server.default_script = lambda body: Script(frames=12, delay=0.005)
        yield server


@pytest.fixture(scope="module")
def workers(
    backend: VLLMServer, tiny_snac_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("workers")
    env = backend_env(
        backend.url, tiny_snac_dir, tmp, WORKERS="2", RATE_LIMIT_PER_MINUTE="4",
        API_KEYS=",".join([*KEYS, "limited"]),
    )  # fmt: skip
    with GatewayProcess(env, tmp / "gateway.log") as gateway:
        yield gateway


def pinned_clients(url: str) -> dict[int, httpx.Client]:
    """One keep-alive client per worker process, told apart by the pid /health reports."""
    found: dict[int, httpx.Client] = {}
    for _ in range(20):
        clients = [httpx.Client(base_url=url, timeout=10) for _ in range(12)]
        barrier = threading.Barrier(len(clients))

        def pid_of(client: httpx.Client, barrier: threading.Barrier = barrier) -> int:
            barrier.wait()  # at once: an idle worker takes a connection while another is busy
            value: int = client.get("/health").json()["pid"]
            return value

        with ThreadPoolExecutor(len(clients)) as pool:
            pids = list(pool.map(pid_of, clients))
        for pid, client in zip(pids, clients, strict=True):
            if pid not in found:
                found[pid] = client
            else:
                client.close()
        if len(found) == 2:
            return found
    raise AssertionError(f"connections reached only workers {sorted(found)}")


def test_two_workers_serve_one_port_and_metrics_add_up(workers: GatewayProcess) -> None:
    with ThreadPoolExecutor(STREAMS) as pool:
        responses = list(
            pool.map(
                lambda key: httpx.post(
                    f"{workers.url}/v1/audio/speech",
                    json=SPEECH,
                    timeout=30,
                    headers={"Authorization": f"Bearer {key}"},
                ),
                KEYS,
            )
        )
    assert [r.status_code for r in responses] == [200] * STREAMS
    clients = pinned_clients(workers.url)
    try:
        # Whichever worker answers the scrape, it reports both workers' streams.
        for pid, client in clients.items():
            scrape = Scrape(client.get("/metrics").text)
            assert scrape.get("tts_streams_total", outcome="ok") == STREAMS, pid
            route = {"method": "POST", "route": "/v1/audio/speech", "status": "200"}
            assert scrape.get("tts_http_requests_total", **route) == STREAMS
            assert scrape.get("tts_time_to_first_audio_seconds_count") == STREAMS
            assert scrape.get("tts_backend_tokens_total") == STREAMS * (12 * 7 + 1) - STREAMS
            pids = {dict(labels)["pid"] for name, labels in scrape.samples
                    if name == "process_open_fds"}  # fmt: skip
            assert pids == {str(p) for p in clients}
    finally:
        for client in clients.values():
            client.close()


def test_rate_limits_are_per_worker_process(workers: GatewayProcess) -> None:
    clients = pinned_clients(workers.url)
    try:
        first, second = clients.values()
        # RATE_LIMIT_PER_MINUTE=4 with bursts of 4, per worker: one key spends one
        # worker's budget, and the other worker still has all of its own.
        statuses = [first.get("/v1/models", headers=LIMITED).status_code for _ in range(5)]
        assert statuses == [200] * 4 + [429]
        assert [second.get("/v1/models", headers=LIMITED).status_code for _ in range(4)] == [
            200
        ] * 4
        assert second.get("/v1/models", headers=LIMITED).status_code == 429
    finally:
        for client in clients.values():
            client.close()


def test_workers_bound_request_heads_too(workers: GatewayProcess) -> None:
    """WORKERS > 1 serves with the same protocol as one process (app/api/http_server.py)."""
    for _ in range(4):  # whichever worker takes the connection
        with socket.create_connection(("127.0.0.1", workers.port), timeout=10) as sock:
            sock.sendall(
                b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
            )
            answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.1 431 "), answer


def test_sigterm_stops_every_worker(workers: GatewayProcess) -> None:
    pids = list(pinned_clients(workers.url))
    workers.terminate()
    assert workers.wait(30) in (0, -15), workers.log()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
