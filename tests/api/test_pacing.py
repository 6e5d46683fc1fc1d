"""Chunk sizes follow the listener's buffer, against a backend paced over loopback."""

from __future__ import annotations

import base64
import json
import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.audio.pcm import SAMPLES_PER_FRAME
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import Script, VLLMServer

REAL_TIME = 7 * 24_000 / SAMPLES_PER_FRAME  # tokens per second


@pytest.fixture(scope="module")
def url(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir)) as base:
        yield base


def chunk_frames(url: str) -> list[float]:
    """Frames in each audio chunk the gateway sent (one SSE delta per chunk)."""
    body = {"model": "tts-1", "voice": "tara", "input": "Paced.", "response_format": "pcm"}
    body["max_tokens"] = 2000  # the script decides the length, not the text
    sizes = []
    with httpx.stream(
        "POST", f"{url}/v1/audio/speech", json=body | {"stream_format": "sse"}, timeout=60
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "speech.audio.delta":
                    sizes.append(len(base64.b64decode(event["audio"])) / 2 / SAMPLES_PER_FRAME)
    return sizes


def test_at_real_time_chunks_stay_small(url: str, vllm: VLLMServer) -> None:
    vllm.push(Script(frames=30, pace=REAL_TIME))
    sizes = chunk_frames(url)
    assert sum(sizes) == 30
    assert sizes[0] == 2  # the start-up buffer
    # The listener never holds much: chunks are what is decodable, a frame or two,
    # except the final flush of the frames that were look-ahead until the end.
    assert statistics.median(sizes[1:-1]) <= 2
    assert len(sizes) >= 12


def test_ahead_of_real_time_chunks_grow(url: str, vllm: VLLMServer) -> None:
    vllm.push(Script(frames=120, pace=5 * REAL_TIME))
    sizes = chunk_frames(url)
    assert sum(sizes) == 120
    assert sizes[0] == 2
    assert max(sizes) == 16  # CHUNK_MAX_FRAMES, reached once the buffer is ahead
    assert len(sizes) <= 20
