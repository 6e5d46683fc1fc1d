"""The stress tool's WebSocket endpoints (`ws`: /v1/audio/speech/stream, `deepgram`:
/v1/speak) against the real gateway over loopback, the backend's pace and faults scripted:
what it reports must be what the gateway served and what a listener went through."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from stress_test.client import GatewayClient
from stress_test.corpus import Text, TextPicker
from stress_test.exchange import Endpoint, RequestSpec
from stress_test.load import Runner, burst
from stress_test.measure import RequestResult
from stress_test.report import errors_table
from stress_test.slo import Slo
from stress_test.stats import ErrorCount, summarize
from tests.stress_test.conftest import FRAMES
from tests.stress_test.test_against_gateway import ENGINE_FAILURE, FRAME_SECONDS
from tests.stress_test.test_cli import assert_png, saved, stress
from tests.support.vllm_server import Script, VLLMServer, unused_port_url

ENDPOINTS = ["ws", "deepgram"]
SAMPLE_RATE = 24_000
SEGMENT_SAMPLES = FRAMES * 2048
PAUSE_SAMPLES = round(0.150 * SAMPLE_RATE)
"""SEGMENT_PAUSE_MS between two sentences of one utterance."""


async def run(
    client: GatewayClient,
    endpoint: Endpoint,
    text: str = "Hello there.",
    *,
    requests: int = 1,
    words_per_second: float = 40.0,
    voice: str = "tara",
    response_format: str = "pcm",
    **extra: Any,
) -> list[RequestResult]:
    picker = TextPicker([Text("file", text)], [voice], random.Random(0))
    spec = RequestSpec(
        endpoint=endpoint,
        response_format=response_format,
        extra=extra,
        words_per_second=words_per_second,
    )
    return await burst(Runner(client, spec, picker, stall_threshold=0.01), requests, 1)


@pytest.mark.parametrize(
    ("endpoint", "extra", "rate"),
    [
        ("ws", {}, SAMPLE_RATE),
        ("ws", {"audio": "base64"}, SAMPLE_RATE),
        ("deepgram", {}, SAMPLE_RATE),
        ("deepgram", {"encoding": "mulaw", "sample_rate": 8000}, 8000),
    ],
)
async def test_reported_audio_seconds_are_what_was_served(
    client: GatewayClient, vllm: VLLMServer, endpoint: Endpoint, extra: dict[str, Any], rate: int
) -> None:
    (result,) = await run(client, endpoint, "Hello there. This is a test.", **extra)
    assert result.ok, result.message
    assert (result.status, result.close_code) == (101, 1000)
    # Two sentences, two generations, the usual pause between them.
    assert len(vllm.completions) == 2
    served = (2 * SEGMENT_SAMPLES + PAUSE_SAMPLES) / SAMPLE_RATE
    # Resampled to 8 kHz, a third of a sample either way.
    assert result.audio_seconds == pytest.approx(served, abs=1.0 / rate)
    assert result.bytes == round(result.audio_seconds * rate) * (2 if rate == SAMPLE_RATE else 1)
    assert result.ttfa is not None and 0 < result.ttfa <= result.latency
    assert result.rtf == pytest.approx(result.latency / result.audio_seconds)
    assert result.timeline[-1][1] == result.audio_seconds


@pytest.mark.parametrize(("fmt", "tolerance"), [("wav", 0.0), ("flac", 0.0), ("mp3", 0.1)])
async def test_a_native_session_in_a_container_format_is_decoded_for_its_duration(
    client: GatewayClient, vllm: VLLMServer, fmt: str, tolerance: float
) -> None:
    # One utterance is one stream in the format; lossy codecs add priming.
    (result,) = await run(client, "ws", "Hello there. This is a test.", response_format=fmt)
    assert result.ok, result.message
    served = (2 * SEGMENT_SAMPLES + PAUSE_SAMPLES) / SAMPLE_RATE
    assert result.audio_seconds == pytest.approx(served, abs=tolerance + 1e-9)
    assert result.ttfa is not None and result.sentence_ttfa is not None


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_backend_pause_is_a_stall(
    client: GatewayClient, vllm: VLLMServer, endpoint: Endpoint
) -> None:
    # The backend stops after 10 frames: the listener has at most those to play while it
    # waits, less the gateway's delay to the first audio (allowed half a second on a loaded
    # machine).
    before, pause = 10, 2.0
    vllm.push(Script(frames=FRAMES, pause_after=before * 7, pause=pause))
    (result,) = await run(client, endpoint)
    assert result.ok, result.message
    assert result.stall_count >= 1
    start, end = max(result.stalls, key=lambda stall: stall[1] - stall[0])
    assert end - start >= pause - before * FRAME_SECONDS - 0.5
    assert result.ttfa is not None and start > result.ttfa
    assert result.largest_gap is not None and result.largest_gap >= pause - 0.5
    assert result.audio_seconds == pytest.approx(FRAMES * FRAME_SECONDS)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_backend_failures_are_counted_under_their_cause_and_close_code(
    client: GatewayClient, vllm: VLLMServer, endpoint: Endpoint
) -> None:
    # One sentence a request, one generation each: refused, then cut after 12 frames.
    vllm.push(Script(), Script(status=500, body=ENGINE_FAILURE), Script(frames=40, drop_after=84))
    results = await run(client, endpoint, requests=3)
    assert [(r.ok, r.status, r.cause, r.close_code) for r in results] == [
        (True, 101, None, 1000),
        (False, 101, "backend_error", 1011),
        (False, 101, "backend_error", 1011),
    ]
    assert "engine exploded" in (results[1].message or "")
    assert results[1].audio_seconds == 0
    assert 0 < results[2].audio_seconds < 12 * FRAME_SECONDS
    summary = summarize(results, Slo.parse("ttfa=10s"))
    assert summary.errors == [ErrorCount("backend_error", 101, True, 2, 1011)]
    out = io.StringIO()
    Console(file=out, width=160).print(errors_table(summary))
    (row,) = [line for line in out.getvalue().splitlines() if "backend_error" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["backend_error", "101", "in-band, in the stream or session", "1011", "2"]


@pytest.mark.parametrize(
    ("endpoint", "status", "cause", "close_code"),
    [
        # The native protocol answers in-band and goes on; Deepgram's refuses the handshake.
        ("ws", 101, "invalid_voice", 1000),
        ("deepgram", 400, "invalid_query_parameter", None),
    ],
)
async def test_a_request_the_gateway_refuses_is_counted_under_its_cause(
    client: GatewayClient,
    vllm: VLLMServer,
    endpoint: Endpoint,
    status: int,
    cause: str,
    close_code: int | None,
) -> None:
    (result,) = await run(client, endpoint, voice="nobody")
    assert (result.ok, result.status, result.cause, result.close_code) == (
        False,
        status,
        cause,
        close_code,
    )
    assert result.in_band == (endpoint == "ws")
    assert "nobody" in (result.message or "")


def timed(result: RequestResult) -> tuple[float, float]:
    """(TTFA, the first sentence's TTFA) of a served session."""
    assert result.ok, result.message
    assert result.ttfa is not None and result.sentence_ttfa is not None
    # The gateway cannot speak a sentence it has not got.
    assert 0 < result.sentence_ttfa < result.ttfa
    return result.ttfa, result.sentence_ttfa


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_the_first_sentence_is_timed_from_its_last_word(
    client: GatewayClient, vllm: VLLMServer, endpoint: Endpoint
) -> None:
    pace = 10.0
    words = "Hello there. " + "word " * 10 + "end."
    (early,) = await run(client, endpoint, words, words_per_second=pace)
    # No sentence end: the sentence is complete only with the last word, at the end.
    (late,) = await run(client, endpoint, words.replace(".", ""), words_per_second=pace)
    assert early.latency >= 11 / pace and late.latency >= 11 / pace  # the text's own pace
    # Timed from when the schedule sent the word ("there." is the second), not before.
    ttfa, sentence = timed(early)
    assert ttfa - sentence >= 1 / pace
    ttfa, sentence = timed(late)
    assert ttfa - sentence >= 11 / pace


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_unpaced_text_is_still_spoken_sentence_by_sentence(
    client: GatewayClient, vllm: VLLMServer, endpoint: Endpoint
) -> None:
    text = "Hello there. " + "word " * 30 + "end."
    (result,) = await run(client, endpoint, text, words_per_second=0)
    timed(result)
    # At once, yet sentence by sentence: the first alone, then the rest.
    assert len(vllm.completions) == 2


async def test_a_session_slower_than_the_timeout_is_a_timeout(
    gateway: str, vllm: VLLMServer
) -> None:
    vllm.push(Script(frames=FRAMES, delay=0.02))
    async with GatewayClient(gateway, timeout=1.5) as impatient:
        (result,) = await run(impatient, "ws")
    assert (result.status, result.cause) == (101, "timeout")
    assert result.latency >= 1.5
    assert result.audio_seconds > 0
    # Leaving closes the session, and the gateway its backend request.
    assert await vllm.completions[-1].wait_disconnected(5.0)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_an_unreachable_gateway_is_a_connect_error(endpoint: Endpoint) -> None:
    async with GatewayClient(unused_port_url(), timeout=5.0) as nowhere:
        (result,) = await run(nowhere, endpoint)
    assert (result.status, result.cause, result.close_code) == (None, "connect_error", None)


def test_the_cli_reports_the_first_sentence_as_its_own_metric(
    gateway: str, vllm: VLLMServer, tmp_path: Path
) -> None:
    vllm.default_script = lambda body: Script(frames=8, delay=0.002)
    args = ["burst", "--url", gateway, "--endpoint", "deepgram", "--words-per-second", "20"]
    args += ["--requests", "3", "--warmup", "1", "--corpus", "medium,long", "--save", str(tmp_path)]
    done = stress(*args)
    assert done.returncode == 0, done.stderr
    assert "sentence TTFA" in done.stdout and "Total Requests: 3" in done.stdout
    document = saved(tmp_path)
    assert document["settings"]["endpoint"] == "deepgram"
    assert document["settings"]["words_per_second"] == 20.0
    for request in document["requests"]:
        assert (request["cause"], request["status"], request["close_code"]) == (None, 101, 1000)
        assert 0 < request["sentence_ttfa"] < request["ttfa"]
    sentence = document["summary"]["metrics"]["sentence_ttfa"]
    assert sentence["n"] == 3 and sentence["max"] < document["summary"]["metrics"]["ttfa"]["max"]
    for name in ("ttfa_cdf.png", "rtf_cdf.png", "timelines.png", "sentence_ttfa_cdf.png"):
        assert_png(tmp_path / name)
