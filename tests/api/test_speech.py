"""`POST /v1/audio/speech` end to end: openai SDK → gateway → vLLM-compatible server → SNAC."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.codec.snac import SnacCodec
from app.codec.tokens import FrameAssembler
from tests.api.conftest import gateway_settings
from tests.support.audio import decode_audio
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer, orpheus_tokens

FRAMES = 12  # the test server's default script
# Streamed mp3/aac cannot signal encoder delay and padding: allow two codec frames.
TOLERANCE_S = {"mp3": 0.1, "aac": 0.1, "opus": 0.03, "flac": 0.0, "wav": 0.0, "pcm": 0.0}


def expected_seconds(frames: int = FRAMES) -> float:
    return frames * SAMPLES_PER_FRAME / SAMPLE_RATE


def sdk(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_sdk_streams_every_format(gateway_url: str, vllm: VLLMServer, fmt: str) -> None:
    client = sdk(gateway_url)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello there.", response_format=fmt
    ) as response:
        chunks = list(response.iter_bytes())
        content_type = response.headers["content-type"]
    samples, rate = decode_audio(b"".join(chunks), fmt)
    assert content_type.startswith("audio/")
    assert rate in (SAMPLE_RATE, 48_000)
    duration = len(samples) / rate
    assert abs(duration - expected_seconds()) <= TOLERANCE_S[fmt] + 1e-6, duration
    assert np.abs(samples).max() > 1e-3  # not silence
    body = vllm.completions[-1].body
    assert body["skip_special_tokens"] is False and body["stream"] is True
    assert body["prompt"].startswith("<custom_token_3><|begin_of_text|>tara: Hello there.")
    assert body["stop_token_ids"] == [128258]


async def test_async_sdk_streams(gateway_url: str, vllm: VLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
    async with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="leo", input="Async hello", response_format="wav"
    ) as response:
        data = b"".join([chunk async for chunk in response.iter_bytes()])
    samples, _ = decode_audio(data, "wav")
    assert len(samples) == FRAMES * SAMPLES_PER_FRAME
    await client.close()


def test_pcm_stream_equals_offline_decode(
    gateway_url: str, vllm: VLLMServer, tiny_codec: SnacCodec
) -> None:
    """Streaming through the whole gateway gives the offline decode of all codes."""
    client = sdk(gateway_url)
    response = client.audio.speech.create(
        model="tinyorpheus",
        voice="tara",
        input="Exactness",
        response_format="pcm",
        extra_body={"seed": 1234},
    )
    got = np.frombuffer(response.content, dtype="<i2").astype(np.float64) / 32767.0
    frames = FrameAssembler().feed(orpheus_tokens(1234, FRAMES))
    offline = np.clip(tiny_codec.decode(frames).astype(np.float64), -1, 1)
    assert got.shape == offline.shape
    assert np.abs(got - offline).max() <= 1.5 / 32767


def test_sse_events(gateway_url: str, vllm: VLLMServer) -> None:
    with httpx.stream(
        "POST",
        f"{gateway_url}/v1/audio/speech",
        json={
            "model": "tts-1",
            "voice": "nova",
            "input": "Events",
            "response_format": "pcm",
            "stream_format": "sse",
        },
        timeout=60,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[len("data: ") :])
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(audio) == FRAMES * SAMPLES_PER_FRAME * 2
    usage = events[-1]["usage"]
    # The backend's usage chunk: the test server counts one prompt token per character.
    prompt = vllm.completions[-1].body["prompt"]
    assert usage == {
        "input_tokens": len(prompt),
        "output_tokens": FRAMES * 7,
        "total_tokens": len(prompt) + FRAMES * 7,
    }


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_complete_file_with_exact_headers(gateway_url: str, vllm: VLLMServer, fmt: str) -> None:
    response = httpx.post(
        f"{gateway_url}/v1/audio/speech",
        json={
            "model": "tts-1",
            "voice": "tara",
            "input": "Whole",
            "response_format": fmt,
            "stream": False,
        },
        timeout=60,
    )
    assert response.status_code == 200
    assert float(response.headers["X-Audio-Duration-Seconds"]) == pytest.approx(
        expected_seconds(), abs=1e-3
    )
    assert float(response.headers["X-TTFA-Ms"]) > 0
    assert float(response.headers["X-Processing-Time-Ms"]) >= float(response.headers["X-TTFA-Ms"])
    samples, _ = decode_audio(response.content, fmt)
    assert len(samples) == FRAMES * SAMPLES_PER_FRAME
    if fmt == "wav":
        data = response.content
        assert int.from_bytes(data[4:8], "little") == len(data) - 8
        assert int.from_bytes(data[40:44], "little") == FRAMES * SAMPLES_PER_FRAME * 2


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_speed_changes_duration(gateway_url: str, vllm: VLLMServer, speed: float) -> None:
    response = sdk(gateway_url).audio.speech.create(
        model="tts-1", voice="tara", input="Faster", response_format="pcm", speed=speed
    )
    samples, _ = decode_audio(response.content, "pcm")
    assert len(samples) / SAMPLE_RATE == pytest.approx(expected_seconds() / speed, rel=0.05)


def test_sampling_fields_reach_the_backend(gateway_url: str, vllm: VLLMServer) -> None:
    response = httpx.post(
        f"{gateway_url}/v1/audio/speech",
        json={
            "model": "tts-1",
            "voice": {"id": "dan"},
            "input": "x <|eot_id|> y",
            "response_format": "pcm",
            "temperature": 0.3,
            "top_p": 0.7,
            "repetition_penalty": 1.3,
            "max_tokens": 700,
            "seed": 5,
        },
        timeout=60,
    )
    assert response.status_code == 200
    body = vllm.completions[-1].body
    assert body["temperature"] == 0.3 and body["top_p"] == 0.7
    assert body["repetition_penalty"] == 1.3 and body["max_tokens"] == 700 and body["seed"] == 5
    assert "dan: x y<|eot_id|>" in body["prompt"]


def test_noisy_codec_streams_every_frame(api_vllm: VLLMServer, tiny_snac_dir: Path) -> None:
    """SNAC_NOISE=true (the default): seams are crossfaded, no sample is lost or added."""
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, snac_noise=True, crossfade_ms=20)
    api_vllm.reset()
    api_vllm.frames = 40  # several windows, so several crossfaded seams
    try:
        with running_gateway(settings) as url:
            response = sdk(url).audio.speech.create(
                model="tts-1", voice="tara", input="Noise on", response_format="pcm"
            )
    finally:
        api_vllm.reset()
    samples, _ = decode_audio(response.content, "pcm")
    assert len(samples) == 40 * SAMPLES_PER_FRAME
    assert np.abs(samples).max() > 1e-3
