"""`/metrics`, probes, request ids and JSON logs of a real gateway over loopback."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api.logs import JsonFormatter, request_id
from app.api.metrics import GatewayMetrics
from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.main import create_app
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape, wait_idle
from tests.support.vllm_server import Script, VLLMServer

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hello.", "response_format": "pcm"}
FRAMES = 12


@pytest.fixture(scope="module")
def gateway(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir)) as url:
        yield url


def test_synthesis_feeds_every_metric(gateway: str, vllm: VLLMServer) -> None:
    before = wait_idle(gateway)
    for fmt in ("pcm", "wav"):
        response = httpx.post(f"{gateway}/v1/audio/speech", json=SPEECH | {"response_format": fmt})
        assert response.status_code == 200
    after = wait_idle(gateway)

    def delta(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    route = {"method": "POST", "route": "/v1/audio/speech", "status": "200"}
    assert delta("tts_http_requests_total", **route) == 2
    assert delta("tts_http_request_duration_seconds_count", route="/v1/audio/speech") == 2
    assert delta("tts_time_to_first_audio_seconds_count") == 2
    assert delta("tts_synthesis_duration_seconds_count") == 2
    assert delta("tts_real_time_factor_count") == 2
    assert delta("tts_real_time_factor_sum") > 0
    assert delta("tts_streams_total", outcome="ok") == 2
    expected_audio = 2 * FRAMES * SAMPLES_PER_FRAME / SAMPLE_RATE
    assert delta("tts_audio_seconds_total") == pytest.approx(expected_audio)
    # 12 frames of 7 tokens each (end-of-speech is a stop token, not counted).
    assert delta("tts_backend_tokens_total") == 2 * FRAMES * 7
    assert delta("tts_backend_tokens_per_second_count") == 2
    assert delta("tts_decode_batch_size_count") >= 2
    assert delta("tts_decode_batch_size_sum") >= delta("tts_decode_batch_size_count")
    assert after.get("tts_decode_queue_depth") == 0
    assert after.get("tts_decode_queue_capacity") > 0
    assert after.get("tts_active_streams") == 0


def test_errors_are_counted_by_cause(gateway: str, vllm: VLLMServer) -> None:
    before = scrape(gateway)
    assert httpx.post(f"{gateway}/v1/audio/speech", json=SPEECH | {"input": " "}).status_code == 400
    assert httpx.get(f"{gateway}/nope").status_code == 404
    vllm.push(Script(status=500, body={"error": {"message": "boom", "code": 500}}))
    assert httpx.post(f"{gateway}/v1/audio/speech", json=SPEECH).status_code == 502
    after = scrape(gateway)
    for cause in ("invalid_value", "not_found", "backend_error"):
        assert (
            after.get("tts_errors_total", cause=cause) - before.get("tts_errors_total", cause=cause)
            == 1
        ), cause
    # Unknown paths share one label: clients cannot create series at will.
    assert after.get("tts_http_requests_total", method="GET", route="unmatched", status="404") >= 1
    assert not any("/nope" in str(labels) for _, labels in after.samples)


def test_request_id_is_echoed_or_generated(gateway: str) -> None:
    echoed = httpx.get(f"{gateway}/live", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = httpx.get(f"{gateway}/live")
    other = httpx.get(f"{gateway}/live")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert generated.headers["x-request-id"] != other.headers["x-request-id"]
    # A header that could forge log lines is replaced, not echoed.
    forged = httpx.get(f"{gateway}/live", headers={"X-Request-ID": 'a" b{}'})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])
    error = httpx.post(f"{gateway}/v1/audio/speech", json={}, headers={"X-Request-ID": "err-1"})
    assert error.status_code == 400 and error.headers["x-request-id"] == "err-1"


def test_access_log_is_json_with_the_request_id(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        httpx.get(f"{gateway}/live", headers={"X-Request-ID": "log-me"})
        # The line is written once the response is sent: the client may see it first.
        deadline = time.monotonic() + 2
        while not [r for r in caplog.records if r.name == "app.access"]:
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.01)
    records = [r for r in caplog.records if r.name == "app.access"]
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "log-me"
    assert line["status"] == 200 and line["path"] == "/live" and line["level"] == "info"


def test_json_formatter_uses_the_context_request_id() -> None:
    token = request_id.set("ctx-7")
    try:
        record = logging.LogRecord("app.x", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line == {
        "time": line["time"],
        "level": "warning",
        "logger": "app.x",
        "message": "hi there",
        "request_id": "ctx-7",
    }


def test_probes(gateway: str, vllm: VLLMServer) -> None:
    assert httpx.get(f"{gateway}/health").json()["status"] == "ok"
    assert httpx.get(f"{gateway}/live").status_code == 200
    ready = httpx.get(f"{gateway}/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "codec": "loaded",
        "backend": "answering",
        "replicas": {vllm.url: "closed"},
    }


def test_registries_are_per_app() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()  # no duplicate-registration error
    first.observe_error("x")
    assert b'tts_errors_total{cause="x"} 1.0' in first.render()
    assert b'cause="x"' not in second.render()


def test_sentry_dsn_without_sentry_sdk_warns(
    tiny_snac_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # import fails as if not installed
    settings = gateway_settings(
        "http://127.0.0.1:9", tiny_snac_dir, sentry_dsn="https://k@sentry.example/1"
    )
    with caplog.at_level(logging.WARNING, logger="app"):
        create_app(settings)
    assert any("sentry-sdk is not installed" in r.getMessage() for r in caplog.records)
