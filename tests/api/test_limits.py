"""Rate limits, stream admission, input limits and CORS, over real sockets."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.api.limits import RateLimiter, StreamSlots
from app.errors import Overloaded
from tests.api.conftest import gateway_settings
from tests.support.clips import chirp, encode_clip
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape, wait_idle
from tests.support.vllm_server import Script, VLLMServer

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hi.", "response_format": "pcm"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(20.0)
    assert limiter.acquire("b") is None  # clients are independent
    clock.now = 20.0
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is not None


@given(
    per_minute=st.integers(1, 120),
    gaps=st.lists(st.floats(0.0, 30.0, allow_nan=False), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_refill(per_minute: int, gaps: list[float]) -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute, clock=clock)
    allowed = 0
    for gap in gaps:
        clock.now += gap
        wait = limiter.acquire("c")
        if wait is None:
            allowed += 1
        else:
            assert 0 < wait <= 60.0 / per_minute + 1e-9
    assert allowed <= per_minute + clock.now * per_minute / 60.0 + 1e-6


def test_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock, max_clients=10)
    for i in range(10):
        limiter.acquire(f"ip:{i}")
    clock.now = 120.0
    limiter.acquire("late")
    limiter.acquire("later")
    assert len(limiter._buckets) <= 2


def test_slots_are_released_once() -> None:
    slots = StreamSlots(2)
    first, second = slots.acquire(), slots.acquire()
    with pytest.raises(Overloaded) as info:
        slots.acquire()
    assert info.value.headers["Retry-After"] == "1"
    first.release()
    first.release()
    assert slots.in_use == 1
    second.release()
    assert slots.in_use == 0


def test_rate_limit_per_key_then_429(api_vllm: VLLMServer, tiny_snac_dir: Path) -> None:
    settings = gateway_settings(
        api_vllm.url, tiny_snac_dir, rate_limit_per_minute=2, api_keys="k1,k2"
    )
    with running_gateway(settings) as url:
        k1 = {"Authorization": "Bearer k1"}
        k2 = {"Authorization": "Bearer k2"}
        assert [httpx.get(f"{url}/v1/models", headers=k1).status_code for _ in range(2)] == [
            200,
            200,
        ]
        limited = httpx.get(f"{url}/v1/models", headers=k1)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        error = limited.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert httpx.get(f"{url}/v1/models", headers=k2).status_code == 200  # own budget
        assert httpx.get(f"{url}/health").status_code == 200  # probes are exempt
        assert scrape(url).get("tts_errors_total", cause="rate_limit_exceeded") == 1


def test_rate_limit_per_ip_without_keys(api_vllm: VLLMServer, tiny_snac_dir: Path) -> None:
    api_vllm.reset()
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, rate_limit_per_minute=1)
    with running_gateway(settings) as url:
        assert httpx.post(f"{url}/v1/audio/speech", json=SPEECH).status_code == 200
        limited = httpx.post(f"{url}/v1/audio/speech", json=SPEECH)
        assert limited.status_code == 429 and "retry-after" in limited.headers
        assert len(api_vllm.completions) == 1  # refused before the backend


def test_admission_refuses_beyond_capacity_before_backend_work(
    api_vllm: VLLMServer, tiny_snac_dir: Path
) -> None:
    api_vllm.reset()
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, max_concurrent_streams=1)
    with running_gateway(settings) as url:
        api_vllm.push(Script(frames=30, delay=0.01))
        first_bytes = threading.Event()
        done: list[int] = []

        def long_stream() -> None:
            with httpx.stream("POST", f"{url}/v1/audio/speech", json=SPEECH) as response:
                for _ in response.iter_bytes():
                    first_bytes.set()
                done.append(response.status_code)

        worker = threading.Thread(target=long_stream)
        worker.start()
        assert first_bytes.wait(10)
        refused = httpx.post(f"{url}/v1/audio/speech", json=SPEECH)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert len(api_vllm.completions) == 1  # the refused request never reached the backend
        assert scrape(url).get("tts_active_streams") == 1
        worker.join(10)
        assert done == [200]
        assert wait_idle(url).get("tts_active_streams") == 0
        assert httpx.post(f"{url}/v1/audio/speech", json=SPEECH).status_code == 200


def test_uploads_are_refused_before_they_are_read_when_no_slot_is_free(
    api_vllm: VLLMServer, tiny_snac_dir: Path, tmp_path: Path
) -> None:
    api_vllm.reset()
    settings = gateway_settings(
        api_vllm.url, tiny_snac_dir, max_concurrent_streams=1, data_dir=tmp_path
    )
    clip = encode_clip(chirp(1.5, 16_000), 16_000, "wav")
    with running_gateway(settings) as url:
        api_vllm.push(Script(frames=300, delay=0.02))  # a stream of about 40 s
        holding = threading.Event()
        release = threading.Event()

        def hold_the_slot() -> None:
            with httpx.stream("POST", f"{url}/v1/audio/speech", json=SPEECH) as response:
                holding.set()
                release.wait(10)
                response.close()

        worker = threading.Thread(target=hold_the_slot)
        worker.start()
        try:
            assert holding.wait(10)
            form = {"reference_text": "A clip.", "generate_text": "Hi.", "name": "mine"}
            for path, fields in (
                ("/v1/audio/vc", ("reference_text", "generate_text")),
                ("/v1/audio/voices", ("name", "reference_text")),
            ):
                data = {k: form[k] for k in fields}
                # A valid clip and garbage alike: nothing of the upload is looked at.
                for payload in (clip, b"not audio at all"):
                    files = {"reference_audio": ("ref.wav", payload, "audio/wav")}
                    refused = httpx.post(f"{url}{path}", data=data, files=files)
                    assert refused.status_code == 503, refused.text
                    assert refused.json()["error"]["code"] == "too_many_streams"
        finally:
            release.set()
            worker.join(10)
        assert len(api_vllm.completions) == 1
        assert wait_idle(url).get("tts_active_streams") == 0


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": "   \n\t "}, "input"),
        ({"input": "x" * 101}, "input"),
        ({"instructions": "y" * 51}, "instructions"),
    ],
)
def test_input_limits_are_400(
    api_vllm: VLLMServer, tiny_snac_dir: Path, fields: dict[str, str], param: str
) -> None:
    api_vllm.reset()
    settings = gateway_settings(
        api_vllm.url, tiny_snac_dir, max_input_chars=100, max_instructions_chars=50
    )
    with running_gateway(settings) as url:
        response = httpx.post(f"{url}/v1/audio/speech", json=SPEECH | fields)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert not api_vllm.completions
        at_limit = SPEECH | {"input": "x" * 100, "instructions": "y" * 50}
        assert httpx.post(f"{url}/v1/audio/speech", json=at_limit).status_code == 200


def test_cors(api_vllm: VLLMServer, tiny_snac_dir: Path) -> None:
    settings = gateway_settings(
        api_vllm.url, tiny_snac_dir, cors_origins="https://app.example", api_keys="k"
    )
    with running_gateway(settings) as url:
        preflight = httpx.options(
            f"{url}/v1/audio/speech",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(
            f"{url}/v1/audio/speech",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers
        simple = httpx.get(
            f"{url}/v1/models",
            headers={"Origin": "https://app.example", "Authorization": "Bearer k"},
        )
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
