"""The stress tool against the real gateway over loopback, with the backend's pace and faults
scripted: what it reports must be what the gateway served and what a listener went through."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stress_test.client import GatewayClient
from stress_test.corpus import TextPicker, builtin
from stress_test.exchange import RequestSpec
from stress_test.load import Runner, arrivals, burst, poisson
from stress_test.measure import RequestResult
from tests.stress_test.conftest import FRAMES
from tests.support.vllm_server import Script, VLLMServer, unused_port_url

SAMPLES_PER_FRAME = 2048
SAMPLE_RATE = 24_000
FRAME_SECONDS = SAMPLES_PER_FRAME / SAMPLE_RATE
ENGINE_FAILURE = {
    "error": {
        "message": "engine exploded",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
}


def runner(client: GatewayClient, **spec: Any) -> Runner:
    picker = TextPicker(builtin(["short"]), ["tara"], random.Random(0))
    return Runner(client, RequestSpec(**spec), picker, stall_threshold=0.01)


async def run_burst(
    client: GatewayClient, requests: int = 1, concurrency: int = 1, **spec: Any
) -> list[RequestResult]:
    return await burst(runner(client, **spec), requests, concurrency)


# (response_format, stream, stream_format, tolerance in seconds): lossy codecs add priming.
DELIVERIES = [
    ("pcm", True, "audio", 0.0),
    ("pcm", True, "sse", 0.0),
    ("pcm", False, "audio", 0.0),
    ("wav", True, "audio", 0.0),
    ("flac", True, "sse", 0.0),
    ("opus", True, "audio", 0.0),
    ("mp3", True, "audio", 0.1),
    ("aac", False, "audio", 0.1),
]


@pytest.mark.parametrize(("fmt", "stream", "stream_format", "tolerance"), DELIVERIES)
async def test_reported_audio_seconds_are_what_was_served(
    client: GatewayClient,
    vllm: VLLMServer,
    fmt: str,
    stream: bool,
    stream_format: str,
    tolerance: float,
) -> None:
    (result,) = await run_burst(
        client, response_format=fmt, stream=stream, stream_format=stream_format
    )
    assert result.ok, result.message
    served = FRAMES * SAMPLES_PER_FRAME / SAMPLE_RATE
    assert result.audio_seconds == pytest.approx(served, abs=tolerance + 1e-9)
    assert result.ttfa is not None and 0 < result.ttfa <= result.latency
    assert result.rtf == pytest.approx(result.latency / result.audio_seconds)
    assert result.timeline[-1][1] == result.audio_seconds


async def test_burst_runs_every_request_within_its_concurrency(
    client: GatewayClient, vllm: VLLMServer
) -> None:
    vllm.default_script = lambda body: Script(frames=6, delay=0.002)
    results = await run_burst(client, requests=6, concurrency=3)
    assert [r.index for r in results] == list(range(6))
    assert all(r.ok and r.audio_seconds == pytest.approx(6 * FRAME_SECONDS) for r in results)
    assert len(vllm.completions) == 6


async def test_a_mid_stream_pause_is_a_stall_of_about_its_length(
    client: GatewayClient, vllm: VLLMServer
) -> None:
    # The first chunk (the 2-frame start-up buffer, 171 ms) leaves once 5 frames are in;
    # then the backend stops.
    pause = 1.0
    vllm.push(Script(frames=FRAMES, pause_after=5 * 7, pause=pause))
    (result,) = await run_burst(client)
    assert result.ok, result.message
    assert result.stall_count >= 1, (result.ttfa, result.timeline)
    longest = max(end - start for start, end in result.stalls)
    assert longest == pytest.approx(pause - 2 * FRAME_SECONDS, abs=0.3)
    # The chunks around the pause each wait for a decode; the one before it is the stream's
    # first (the slowest: a cold shape), so the gap can come out shorter than the pause.
    assert result.largest_gap is not None and result.largest_gap >= pause - 0.25
    assert result.audio_seconds == pytest.approx(FRAMES * FRAME_SECONDS)


async def test_an_unpaced_stream_has_no_stall(client: GatewayClient, vllm: VLLMServer) -> None:
    (result,) = await run_burst(client)
    assert result.ok and result.stall_count == 0 and result.stall_seconds == 0


async def test_backend_failures_are_counted_under_their_cause(
    client: GatewayClient, vllm: VLLMServer
) -> None:
    vllm.push(
        Script(),
        Script(status=500, body=ENGINE_FAILURE),
        Script(),
        Script(status=500, body=ENGINE_FAILURE),
    )
    results = await run_burst(client, requests=4, concurrency=1)
    assert [(r.ok, r.status, r.cause) for r in results] == [
        (True, 200, None),
        (False, 502, "backend_error"),
        (True, 200, None),
        (False, 502, "backend_error"),
    ]


@pytest.mark.parametrize(
    ("stream_format", "cause", "in_band"),
    [("sse", "backend_error", True), ("audio", "stream_aborted", False)],
)
async def test_a_failure_after_the_first_audio_is_counted_with_the_audio_so_far(
    client: GatewayClient, vllm: VLLMServer, stream_format: str, cause: str, in_band: bool
) -> None:
    vllm.push(Script(frames=40, drop_after=7 * 12))
    (result,) = await run_burst(client, stream_format=stream_format)
    assert (result.ok, result.status, result.cause, result.in_band) == (False, 200, cause, in_band)
    assert result.ttfa is not None and 0 < result.audio_seconds < 12 * FRAME_SECONDS


async def test_an_unreachable_gateway_is_a_connect_error() -> None:
    async with GatewayClient(unused_port_url(), timeout=5.0) as nowhere:
        (result,) = await run_burst(nowhere)
        models = await nowhere.models()
        ready = await nowhere.wait_ready(0.0)
    assert (result.status, result.cause) == (None, "connect_error")
    assert "ConnectError" in models["error"]
    assert not ready


async def test_poisson_sends_the_seeded_schedule(client: GatewayClient, vllm: VLLMServer) -> None:
    # Each response takes about a second, longer than the mean gap between arrivals.
    vllm.default_script = lambda body: Script(frames=4, delay=0.035)
    expected = list(arrivals(8.0, 1.0, random.Random(3)))
    results = await poisson(runner(client), 8.0, 1.0, random.Random(3))
    assert len(results) == len(expected) == len(vllm.completions)
    assert all(r.ok for r in results)
    sent = [r.sent_at - results[0].sent_at for r in results]
    offsets = [t - expected[0] for t in expected]
    # Open loop: each request leaves at its arrival time, whatever the others are doing.
    assert sent == pytest.approx(offsets, abs=0.4)
    first = results[0]
    assert any(r.sent_at < first.sent_at + first.latency for r in results[1:])


async def test_a_request_slower_than_the_timeout_is_a_timeout(
    gateway: str, vllm: VLLMServer
) -> None:
    # Tokens keep trickling in, so no single read times out: the whole request does.
    vllm.push(Script(frames=FRAMES, delay=0.02))
    async with GatewayClient(gateway, timeout=1.5) as impatient:
        (result,) = await run_burst(impatient)
    assert (result.status, result.cause) == (200, "timeout")
    assert 1.5 <= result.latency < 4.0
    assert result.audio_seconds > 0
    assert await vllm.completions[-1].wait_disconnected(5.0)
