"""No 500 from a backend's answer or a client's disconnect; each failure logged once with its
request id and cause; 500s carry X-Request-ID; 401s counted under their route; internal
detail (backend URLs and bodies, the model path) in logs, never in responses."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.gateway_process import GatewayProcess, backend_env
from tests.support.metrics import scrape, wait_idle
from tests.support.vllm_server import Script, VLLMServer, orpheus_tokens, unused_port_url

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hello there.", "response_format": "pcm"}
HUGE_CODE = {"error": {"message": "odd failure", "type": "X", "param": None, "code": "9" * 5000}}


@pytest.fixture(scope="module")
def process(
    api_vllm: VLLMServer, tiny_snac_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """The real server process: its log is the JSON lines operators read."""
    tmp = tmp_path_factory.mktemp("hygiene")
    with GatewayProcess(backend_env(api_vllm.url, tiny_snac_dir, tmp), tmp / "gateway.log") as gw:
        yield gw


def log_lines(process: GatewayProcess) -> list[dict[str, Any]]:
    lines = process.log_path.read_text("utf-8", errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def lines_of(process: GatewayProcess, rid: str, settle: float = 0.5) -> list[dict[str, Any]]:
    time.sleep(settle)  # the access line is written once the response is done
    return [line for line in log_lines(process) if line.get("request_id") == rid]


def problems(process: GatewayProcess, since: int) -> list[dict[str, Any]]:
    """Error lines, and anything uvicorn or Starlette say about unhandled exceptions."""
    bad = ("Exception in ASGI application", "Caught handled exception", "ClientDisconnect")
    return [
        line
        for line in log_lines(process)[since:]
        if line["level"] in ("error", "critical") or any(b in json.dumps(line) for b in bad)
    ]


def test_a_5000_digit_error_code_before_audio_is_a_502(
    process: GatewayProcess, vllm: VLLMServer
) -> None:
    since = len(log_lines(process))
    vllm.push(Script(tokens=orpheus_tokens(1, 4), inband_error_after=0, inband_error=HUGE_CODE))
    response = httpx.post(
        f"{process.url}/v1/audio/speech", json=SPEECH, headers={"X-Request-ID": "huge-1"}
    )
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "backend_error"
    assert "odd failure" in response.json()["error"]["message"]
    assert not problems(process, since)
    failures = [line for line in lines_of(process, "huge-1") if line["logger"] != "app.access"]
    assert len(failures) == 1 and failures[0]["error_cause"] == "backend_error"


def test_a_failure_after_the_first_audio_is_logged_once_and_aborts_the_transfer(
    process: GatewayProcess, vllm: VLLMServer
) -> None:
    since = len(log_lines(process))
    vllm.push(Script(tokens=orpheus_tokens(2, 40), inband_error_after=140, inband_error=HUGE_CODE))
    received = bytearray()
    with (
        pytest.raises(httpx.HTTPError),
        httpx.stream(
            "POST",
            f"{process.url}/v1/audio/speech",
            json=SPEECH,
            headers={"X-Request-ID": "mid-1"},
            timeout=10,
        ) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
    assert received  # audio came before the failure; the transfer then broke
    assert not problems(process, since)
    lines = lines_of(process, "mid-1")
    failures = [line for line in lines if line["logger"] != "app.access"]
    assert len(failures) == 1, failures
    assert failures[0]["error_cause"] == "backend_error"
    assert "stream aborted" in failures[0]["message"]
    access = [line for line in lines if line["logger"] == "app.access"]
    assert len(access) == 1 and access[0]["error_cause"] == "backend_error"


def test_an_upload_cut_by_a_disconnect_is_no_unhandled_error(process: GatewayProcess) -> None:
    since = len(log_lines(process))
    before = scrape(process.url).get("tts_errors_total", cause="client_disconnected")
    boundary = "cut"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="reference_audio"; '
        'filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode() + b"\0" * 2000
    head = (
        f"POST /v1/audio/vc HTTP/1.1\r\nHost: x\r\nX-Request-ID: cut-1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: 500000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", process.port)) as sock:
        sock.sendall(head + start)
        time.sleep(0.3)  # the route is reading the body: a stream slot is held
    wait_idle(process.url)
    deadline = time.monotonic() + 5
    while scrape(process.url).get("tts_errors_total", cause="client_disconnected") == before:
        assert time.monotonic() < deadline, "the disconnect was not counted"
        time.sleep(0.05)
    assert scrape(process.url).get("tts_active_streams") == 0
    assert not problems(process, since)


def test_health_names_no_model_path(process: GatewayProcess) -> None:
    health = httpx.get(f"{process.url}/health").json()
    assert health["engine"] == "http"
    assert "/" not in json.dumps(health)


# --- in a thread: a handler can be made to fail, and logs are caught ------------------


@pytest.fixture(scope="module")
def secured(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, api_keys="right-key")
    with running_gateway(settings) as url:
        yield url


def test_a_500_carries_the_request_id_and_is_logged_once(
    secured: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("app.service.gateway.prepare_text", broken)
    caplog.set_level(logging.INFO)
    response = httpx.post(
        f"{secured}/v1/audio/normalize",
        json={"input": "Hi."},
        headers={"Authorization": "Bearer right-key", "X-Request-ID": "bug-1"},
    )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-1"
    assert response.json()["error"] == {
        "message": "Internal server error.",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert "a bug" not in response.text
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and getattr(tracebacks[0], "request_id", None) == "bug-1"


def test_401s_are_counted_under_their_route(secured: str) -> None:
    def count() -> float:
        return scrape(secured).get(
            "tts_http_requests_total", method="POST", route="/v1/audio/speech", status="401"
        )

    before = count()
    for _ in range(3):
        response = httpx.post(
            f"{secured}/v1/audio/speech", json=SPEECH, headers={"Authorization": "Bearer no"}
        )
        assert response.status_code == 401
    assert count() == before + 3
    unknown = httpx.post(f"{secured}/no/such/path", headers={"Authorization": "Bearer no"})
    assert unknown.status_code == 401
    assert (
        scrape(secured).get(
            "tts_http_requests_total", method="POST", route="unmatched", status="401"
        )
        >= 1
    )


def test_backend_addresses_stay_in_the_log(
    tiny_snac_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = unused_port_url()
    caplog.set_level(logging.INFO)
    with running_gateway(gateway_settings(backend, tiny_snac_dir)) as url:
        response = httpx.post(f"{url}/v1/audio/speech", json=SPEECH, timeout=10)
    assert response.status_code == 503
    port = backend.rsplit(":", 1)[1]
    assert port not in response.text and "127.0.0.1" not in response.text
    assert any(port in r.getMessage() for r in caplog.records if r.name == "app.api.errors")
