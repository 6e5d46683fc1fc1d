"""Retry advice: deterministic failures say `x-should-retry: false`, and the real openai
SDK (default `max_retries=2`) then sends them once; capacity failures keep `Retry-After`
and the SDK does retry them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import retry_headers
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape
from tests.support.vllm_server import END_OF_SPEECH, Script, VLLMServer

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hello there."}


def speech_requests(url: str, status: int) -> float:
    return scrape(url).get(
        "tts_http_requests_total", method="POST", route="/v1/audio/speech", status=str(status)
    )


@given(
    st.integers(400, 599),
    st.sampled_from([None, {}, {"Retry-After": "7"}, {"retry-after": "2", "X-A": "b"}]),
    st.sampled_from([None, True, False]),
)
def test_retry_headers(
    status: int, given_headers: dict[str, str] | None, retryable: bool | None
) -> None:
    headers = retry_headers(status, given_headers, retryable=retryable)
    lowered = {k.lower(): v for k, v in headers.items()}
    can_retry = retryable if retryable is not None else status in (408, 409, 429) or status >= 500
    assert ("x-should-retry" in lowered) is (not can_retry)
    if "x-should-retry" in lowered:
        assert lowered["x-should-retry"] == "false"
    if can_retry and status in (429, 503):
        wanted = {k.lower(): v for k, v in (given_headers or {}).items()}.get("retry-after", "1")
        assert lowered["retry-after"] == wanted
    else:
        assert "retry-after" not in lowered
    assert lowered.get("x-a") == (given_headers or {}).get("X-A")


@pytest.fixture
def no_audio(vllm: VLLMServer) -> VLLMServer:
    """Every request ends at once with end-of-speech: no audio frame at all."""
    vllm.default_script = lambda body: Script(tokens=[END_OF_SPEECH])
    return vllm


def test_sync_sdk_sends_no_audio_once(gateway_url: str, no_audio: VLLMServer) -> None:
    before = speech_requests(gateway_url, 502)
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="k")  # default retries
    assert client.max_retries == 2
    with pytest.raises(openai.InternalServerError) as info:
        client.audio.speech.create(**SPEECH, extra_body={"temperature": 0})  # type: ignore[arg-type]
    assert info.value.status_code == 502 and info.value.code == "no_audio"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in info.value.response.headers
    assert len(no_audio.completions) == 1
    assert speech_requests(gateway_url, 502) - before == 1


async def test_async_sdk_sends_no_audio_once(gateway_url: str, no_audio: VLLMServer) -> None:
    before = speech_requests(gateway_url, 502)
    async with openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="k") as client:
        with pytest.raises(openai.InternalServerError):
            async with client.audio.speech.with_streaming_response.create(
                **SPEECH,  # type: ignore[arg-type]
                response_format="pcm",
            ) as response:
                await response.read()
    assert len(no_audio.completions) == 1
    assert speech_requests(gateway_url, 502) - before == 1


@pytest.mark.parametrize(
    ("status", "script"),
    [
        (400, Script(status=400, body={"error": {"message": "bad prompt", "code": 400}})),
        (502, Script(status=401, body={"error": {"message": "no key", "code": 401}})),
        (502, Script(status=404, body={"error": {"message": "no model", "code": 404}})),
    ],
)
def test_backend_configuration_errors_are_not_retried(
    gateway_url: str, vllm: VLLMServer, status: int, script: Script
) -> None:
    vllm.default_script = lambda body: script
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="k")
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.speech.create(**SPEECH)  # type: ignore[arg-type]
    assert info.value.status_code == status
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(vllm.completions) == 1


def test_a_transient_backend_failure_is_still_retried(gateway_url: str, vllm: VLLMServer) -> None:
    vllm.push(Script(status=500, body={"error": {"message": "engine died", "code": 500}}))
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="k", max_retries=1)
    response = client.audio.speech.create(**SPEECH, response_format="pcm")  # type: ignore[arg-type]
    assert len(response.content) > 0
    assert len(vllm.completions) == 2  # the 502 was retried and the retry succeeded


def test_unknown_routes_and_bad_keys_say_do_not_retry(
    api_vllm: VLLMServer, tiny_snac_dir: Path
) -> None:
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, api_keys="right")
    with running_gateway(settings) as url:
        for response in (
            httpx.post(
                f"{url}/v1/audio/speech", json=SPEECH, headers={"Authorization": "Bearer x"}
            ),
            httpx.get(f"{url}/v1/nothing", headers={"Authorization": "Bearer right"}),
            httpx.put(f"{url}/v1/audio/speech", headers={"Authorization": "Bearer right"}),
        ):
            assert response.status_code in (401, 404, 405)
            assert response.headers["x-should-retry"] == "false"
            assert "retry-after" not in response.headers


@pytest.fixture
def one_slot(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    api_vllm.reset()
    with running_gateway(
        gateway_settings(api_vllm.url, tiny_snac_dir, max_concurrent_streams=1)
    ) as url:
        yield url
    api_vllm.reset()


def test_capacity_is_retried_after_retry_after(one_slot: str, api_vllm: VLLMServer) -> None:
    api_vllm.push(Script(frames=60, pace=40))  # about 10 s: holds the only slot
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with httpx.stream("POST", f"{one_slot}/v1/audio/speech", json=SPEECH):
            holding.set()
            release.wait(20)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert holding.wait(10)
        client = openai.OpenAI(base_url=f"{one_slot}/v1", api_key="k", max_retries=1)
        with pytest.raises(openai.InternalServerError) as info:
            client.audio.speech.create(**SPEECH)  # type: ignore[arg-type]
        headers = info.value.response.headers
        assert info.value.status_code == 503 and info.value.code == "too_many_streams"
        assert headers["retry-after"] == "1" and "x-should-retry" not in headers
        assert speech_requests(one_slot, 503) == 2  # the first try and one retry
    finally:
        release.set()
        worker.join(20)
    assert len(api_vllm.completions) == 1
