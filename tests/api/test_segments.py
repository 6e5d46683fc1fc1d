"""Long inputs: segmented, normalized, generated ahead, joined into one stream."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape, wait_idle
from tests.support.vllm_server import Script, VLLMServer

FRAMES = 12  # the test server's default script
PAUSE = round(0.15 * SAMPLE_RATE)
SENTENCES = [
    f"Sentence {n} of the long input costs ${n}.50 and takes {n + 2} minutes, Dr. Smith said."
    for n in range(1, 25)
]
LONG = " ".join(SENTENCES)


@pytest.fixture(scope="module")
def url(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir)) as base:
        yield base


def speech(url: str, text: str, **fields: object) -> httpx.Response:
    body = {"model": "tts-1", "voice": "tara", "input": text, "response_format": "pcm"}
    return httpx.post(f"{url}/v1/audio/speech", json=body | fields, timeout=60)


def spoken(prompt: str) -> str:
    """The text of a speech prompt: `{voice}: {text}` between the control tokens."""
    return prompt.split("<|begin_of_text|>", 1)[1].split("<|eot_id|>")[0].split(": ", 1)[1]


def expected_segments(url: str, text: str) -> list[str]:
    response = httpx.post(f"{url}/v1/audio/normalize", json={"input": text})
    segments: list[str] = response.json()["segments"]
    return segments


def test_a_long_input_is_spoken_segment_by_segment_in_order(url: str, vllm: VLLMServer) -> None:
    assert len(LONG) >= 1500 and len(SENTENCES) >= 20
    response = speech(url, LONG)
    assert response.status_code == 200, response.text
    segments = expected_segments(url, LONG)
    assert len(segments) >= 8
    # The backend saw exactly the normalized segments, in order.
    assert [spoken(r.body["prompt"]) for r in vllm.completions] == segments
    assert (
        " ".join(segments).split()
        == httpx.post(f"{url}/v1/audio/normalize", json={"input": LONG})
        .json()["normalized"]
        .split()
    )
    assert "dollar" in segments[0] and "$" not in " ".join(segments)
    # Every segment's audio came back, with a pause between segments.
    samples = len(response.content) // 2
    assert samples == len(segments) * FRAMES * SAMPLES_PER_FRAME + (len(segments) - 1) * PAUSE
    # Short first segment: first audio does not wait for the whole input.
    assert len(segments[0]) <= 100
    budgets = [r.body["max_tokens"] for r in vllm.completions]
    assert all(7 * 12 <= b <= 2048 for b in budgets)


def test_seams_between_segments_are_click_free(url: str, vllm: VLLMServer) -> None:
    text = "First part of the text. Second part of the text."
    response = speech(url, text, normalize=False)
    assert len(vllm.completions) == 2  # first segment is one sentence
    audio = np.frombuffer(response.content, dtype="<i2").astype(np.float32) / 32767
    seam = FRAMES * SAMPLES_PER_FRAME
    peak = np.abs(audio).max()
    # The first segment fades to zero, the pause is silent, the second fades in from zero.
    assert abs(audio[seam - 1]) < 0.01 * peak and abs(audio[seam + PAUSE]) < 0.01 * peak
    assert not audio[seam : seam + PAUSE].any()
    # Near the silence the signal is near zero on both sides (the fades' last and first
    # tenth): no step into or out of the pause.
    assert np.abs(audio[seam - 24 : seam]).max() < 0.05 * peak
    assert np.abs(audio[seam + PAUSE : seam + PAUSE + 24]).max() < 0.05 * peak


def test_the_next_segment_is_requested_before_the_current_one_ends(
    url: str, vllm: VLLMServer
) -> None:
    # Paced: each segment takes about half a second to generate.
    vllm.default_script = lambda body: Script(frames=FRAMES, delay=0.006)
    text = " ".join(SENTENCES[:4])
    assert speech(url, text).status_code == 200
    first, second = vllm.completions[:2]
    assert first.completed_at is not None
    assert second.received_at < first.completed_at  # generated ahead, overlapping


def test_leaving_closes_every_segment_request(url: str, vllm: VLLMServer) -> None:
    vllm.default_script = lambda body: Script(frames=200, delay=0.01)
    body = {"model": "tts-1", "voice": "tara", "input": LONG, "response_format": "pcm"}
    with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=30) as response:
        for _ in response.iter_bytes():
            break
        # The current segment and the one generated ahead are both in flight now.
        deadline = time.monotonic() + 5
        while len(vllm.completions) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    open_ones = [r for r in vllm.completions if not r.completed]
    assert len(open_ones) == 2
    assert all(r.gone.wait(1.0) for r in open_ones)
    assert wait_idle(url).get("tts_active_streams") == 0


def test_a_failing_first_segment_is_a_status(url: str, vllm: VLLMServer) -> None:
    vllm.push(Script(status=503, body={"error": {"message": "engine dead", "code": 503}}))
    response = speech(url, LONG)
    assert response.status_code == 502
    assert "engine dead" in response.json()["error"]["message"]


def test_a_failing_later_segment_ends_sse_with_an_error(url: str, vllm: VLLMServer) -> None:
    first = expected_segments(url, LONG)[0]
    # Chosen by prompt, not by arrival: the second segment is requested at once, generated
    # ahead, and may reach the backend before the first.
    vllm.default_script = lambda body: (
        Script()
        if spoken(body["prompt"]) == first
        else Script(frames=FRAMES, inband_error_after=14)
    )
    body = {"model": "tts-1", "voice": "tara", "input": LONG, "response_format": "pcm"}
    events = []
    with httpx.stream(
        "POST", f"{url}/v1/audio/speech", json=body | {"stream_format": "sse"}, timeout=30
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if "audio" in e)
    assert len(audio) >= FRAMES * SAMPLES_PER_FRAME * 2  # the first segment was heard
    assert events[-1]["type"] == "error"
    assert wait_idle(url).get("tts_active_streams") == 0


def test_usage_sums_the_segments(url: str, vllm: VLLMServer) -> None:
    text = " ".join(SENTENCES[:3])
    body = {"model": "tts-1", "voice": "tara", "input": text, "response_format": "pcm"}
    with httpx.stream(
        "POST", f"{url}/v1/audio/speech", json=body | {"stream_format": "sse"}, timeout=30
    ) as response:
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    usage = events[-1]["usage"]
    prompts = [len(r.body["prompt"]) for r in vllm.completions]
    assert usage["input_tokens"] == sum(prompts)
    assert usage["output_tokens"] == len(prompts) * FRAMES * 7


def test_a_segment_cut_by_its_budget_is_counted(url: str, vllm: VLLMServer) -> None:
    before = scrape(url).get("tts_segments_truncated_total") or 0
    vllm.push(Script(frames=400))  # far beyond "Hi."'s own budget
    assert speech(url, "Hi.").status_code == 200
    assert vllm.completions[-1].body["max_tokens"] < 400 * 7
    assert scrape(url).get("tts_segments_truncated_total") == before + 1


def test_normalize_false_sends_the_text_as_written(url: str, vllm: VLLMServer) -> None:
    assert speech(url, "It costs $5.", normalize=False).status_code == 200
    assert spoken(vllm.completions[-1].body["prompt"]) == "It costs $5."
    assert speech(url, "It costs $5.").status_code == 200
    assert spoken(vllm.completions[-1].body["prompt"]) == "It costs five dollars."


def test_nothing_speakable_is_a_400(url: str, vllm: VLLMServer) -> None:
    response = speech(url, "🎉 🎉")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"
    assert not vllm.completions
