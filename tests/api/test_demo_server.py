"""The demo profile: the real `python -m app --demo` process serves the full API offline."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from tests.support.audio import decode_audio
from tests.support.demo import running_demo

FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("demo")) as url:
        yield url


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
