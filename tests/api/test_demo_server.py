"""The demo profile: the real `python -m app --demo` process serves the full API offline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from tests.support.audio import decode_audio

FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {
        **os.environ,
        "CACHE_DIR": str(root / "cache"),
        "DATA_DIR": str(root / "data"),
        "TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("TTS_API", None)
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "--demo", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail("demo server exited:\n" + (root / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("demo server not ready in 240 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_demo_answers_the_openai_sdk_in_every_format(demo_url: str, fmt: str) -> None:
    client = openai.OpenAI(base_url=f"{demo_url}/v1", api_key="demo", max_retries=0, timeout=120)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="tara",
        input="The demo speaks noise.",
        response_format=fmt,
        extra_body={"max_tokens": 140, "seed": 3},
    ) as response:
        data = response.read()
    samples, rate = decode_audio(data, fmt)
    seconds = len(samples) / rate
    # The constrained engine emits whole frames only: at most 20 frames for 140 tokens.
    assert 0 < seconds <= 20 * SAMPLES_PER_FRAME / SAMPLE_RATE + 0.1


def test_demo_lists_voices_and_models(demo_url: str) -> None:
    assert httpx.get(f"{demo_url}/v1/models").json()["data"]
    speakers = {s["id"] for s in httpx.get(f"{demo_url}/v1/audio/speaker").json()["data"]}
    assert {"tara", "alloy"} <= speakers
