"""Request heads against the real server process (`python -m app`): oversized heads get 431
and cost no memory, slow or missing heads are cut off after HEADER_TIMEOUT, and ordinary
requests (large but legal heads, keep-alive, bodies) are untouched."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api.http_server import BoundedHttpToolsProtocol
from tests.support.gateway_process import GatewayProcess, backend_env
from tests.support.vllm_server import VLLMServer

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 2.0
MB = 1024 * 1024


@pytest.fixture(scope="module")
def gateway(
    api_vllm: VLLMServer, tiny_snac_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("heads")
    env = backend_env(
        api_vllm.url, tiny_snac_dir, tmp,
        MAX_HEADER_BYTES=str(MAX_HEAD), HEADER_TIMEOUT=str(HEAD_TIMEOUT),
    )  # fmt: skip
    with GatewayProcess(env, tmp / "gateway.log") as process:
        yield process


def rss_mb(process: GatewayProcess) -> float:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def connect(process: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", process.port), timeout=10)
    return sock


def response_of(sock: socket.socket, seconds: float = 10.0) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    sock.settimeout(seconds)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return bytes(data)


def test_a_head_over_the_limit_gets_431(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD + 10))
        answer = response_of(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"request_header_fields_too_large" in answer and b"MAX_HEADER_BYTES" in answer


def test_a_large_legal_head_is_served(gateway: GatewayProcess) -> None:
    headers = {f"X-Filler-{n}": "b" * 1000 for n in range(12)}  # 12 KB, under the limit
    with httpx.Client(base_url=gateway.url) as client:
        for _ in range(3):  # on one kept-alive connection: each head is counted afresh
            assert client.get("/health", headers=headers).status_code == 200


def send_until_refused(process: GatewayProcess, total: int) -> int:
    """Send an unterminated head of up to `total` bytes; how many went out before the
    server closed the connection."""
    sent = 0
    chunk = b"a" * (256 * 1024)
    with connect(process) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Huge: ")
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return sent


def test_huge_heads_are_cut_off_without_costing_memory(gateway: GatewayProcess) -> None:
    httpx.get(f"{gateway.url}/health")  # warm: the baseline is a serving process
    before = rss_mb(gateway)
    started = time.monotonic()
    sent = send_until_refused(gateway, 30 * MB)
    assert sent < 30 * MB, "a 30 MB head was read to the end"
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(send_until_refused(gateway, 50 * MB)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4 and all(sent < 50 * MB for sent in results)
    assert time.monotonic() - started < 20
    # Before the limit, 4 x 50 MB cost about 200 MB here.
    assert rss_mb(gateway) - before < 25
    assert httpx.get(f"{gateway.url}/health").status_code == 200


def test_slow_heads_are_cut_off(gateway: GatewayProcess) -> None:
    socks = [connect(gateway) for _ in range(30)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed: set[int] = set()
        while len(closed) < len(socks) and time.monotonic() - started < HEAD_TIMEOUT + 8:
            for n, sock in enumerate(socks):  # a header byte every half second
                if n in closed:
                    continue
                try:
                    sock.sendall(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    closed.add(n)
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        assert len(closed) == len(socks), f"{len(socks) - len(closed)} slow heads still open"
        assert HEAD_TIMEOUT - 0.5 <= elapsed <= HEAD_TIMEOUT + 5
    finally:
        for sock in socks:
            sock.close()
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        answer = response_of(sock, HEAD_TIMEOUT + 5)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_a_connection_that_sends_nothing_is_closed(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        started = time.monotonic()
        assert response_of(sock, HEAD_TIMEOUT + 5) == b""
        assert time.monotonic() - started < HEAD_TIMEOUT + 3


def test_a_body_is_not_counted_as_head(gateway: GatewayProcess) -> None:
    """A request whose body (far over the head limit) arrives with its head in one read."""
    body = b'{"input": "' + b"x" * (MAX_HEAD * 4) + b'"}'
    head = (
        b"POST /v1/audio/normalize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with connect(gateway) as sock:
        sock.sendall(head + body)
        answer = response_of(sock)
    # Refused for its length by the app (MAX_INPUT_CHARS), not for its head by the server.
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]


def test_the_protocol_is_what_python_m_app_serves() -> None:
    from app.api.http_server import server_options
    from app.config import Settings

    options = server_options(Settings(_env_file=None, max_header_bytes=4096))  # type: ignore[call-arg]
    assert options["http"].func is BoundedHttpToolsProtocol
    assert options["http"].keywords["max_header_bytes"] == 4096
