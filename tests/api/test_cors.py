"""CORS through the running gateway: browser SDK preflights (x-stainless-* headers), private
network preflights, and the response headers a page may read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

ORIGIN = "https://chat.example"
SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hi.", "response_format": "wav"}


@pytest.fixture(scope="module")
def url(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, cors_origins=ORIGIN, api_keys="k")
    with running_gateway(settings) as base:
        yield base


def sdk_header_names(url: str) -> list[str]:
    """The request headers the openai SDK really sends (it adds its x-stainless-* set)."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    raw = client.models.with_raw_response.list()
    names = [name.lower() for name in raw.http_request.headers]
    assert any(name.startswith("x-stainless-") for name in names), names
    return names


def preflight(url: str, path: str, **headers: str) -> httpx.Response:
    return httpx.options(
        f"{url}{path}",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"} | headers,
    )


def test_sdk_preflight_is_allowed(url: str) -> None:
    requested = ",".join(sdk_header_names(url))
    response = preflight(url, "/v1/audio/speech", **{"Access-Control-Request-Headers": requested})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(requested.split(",")) <= allowed
    assert "x-stainless-retry-count" in allowed and "authorization" in allowed


def test_private_network_preflight(url: str) -> None:
    response = preflight(
        url,
        "/v1/audio/voices",
        **{
            "Access-Control-Request-Private-Network": "true",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-private-network"] == "true"


def test_other_origins_are_refused(url: str) -> None:
    response = httpx.options(
        f"{url}/v1/audio/speech",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def exposed(response: httpx.Response) -> set[str]:
    value = response.headers["access-control-expose-headers"]
    return {h.strip().lower() for h in value.split(",")}


def test_timing_and_request_id_headers_are_exposed(url: str, vllm: VLLMServer) -> None:
    response = httpx.post(
        f"{url}/v1/audio/speech",
        json=SPEECH | {"stream": False},
        headers={"Origin": ORIGIN, "Authorization": "Bearer k"},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    names = {"x-ttfa-ms", "x-processing-time-ms", "x-audio-duration-seconds", "x-request-id"}
    assert names <= exposed(response)
    assert names <= set(response.headers)


def test_errors_carry_cors_and_readable_retry_advice(url: str) -> None:
    response = httpx.post(f"{url}/v1/audio/speech", json=SPEECH, headers={"Origin": ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["x-should-retry"] == "false"
    assert {"x-should-retry", "retry-after"} <= exposed(response)
