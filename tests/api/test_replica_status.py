"""Backend replica health as operators see it: `/ready` and `/metrics` of a real gateway."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape
from tests.support.vllm_server import VLLMServer, unused_port_url

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hi.", "response_format": "pcm"}
BREAKER = {"backend_failure_threshold": 1, "backend_backoff_seconds": 30.0}


def test_a_replica_out_of_rotation_shows_in_ready_and_metrics(
    vllm: VLLMServer, tiny_snac_dir: Path
) -> None:
    dead = unused_port_url()
    settings = gateway_settings(f"{dead},{vllm.url}", tiny_snac_dir, **BREAKER)
    with running_gateway(settings) as url:
        for _ in range(2):  # one of them is routed to the dead replica first
            assert httpx.post(f"{url}/v1/audio/speech", json=SPEECH, timeout=30).status_code == 200
        ready = httpx.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 200  # one replica in rotation answers
        assert ready.json()["replicas"] == {dead: "open", vllm.url: "closed"}
        metrics = scrape(url)
        assert metrics.get("tts_backend_replica_out", replica=dead) == 1
        assert metrics.get("tts_backend_replica_out", replica=vllm.url) == 0
        assert metrics.get("tts_backend_replica_circuit_opened_total", replica=dead) == 1
        assert metrics.get("tts_backend_replica_failures_total", replica=dead) == 1
        assert metrics.get("tts_backend_replica_failures_total", replica=vllm.url) == 0


def test_not_ready_when_every_replica_is_out(tiny_snac_dir: Path) -> None:
    dead = unused_port_url()
    settings = gateway_settings(dead, tiny_snac_dir, **BREAKER)
    with running_gateway(settings) as url:
        refused = httpx.post(f"{url}/v1/audio/speech", json=SPEECH, timeout=30)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "backend_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        ready = httpx.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["replicas"] == {dead: "open"}
        assert ready.json()["backend"] == "unavailable"
