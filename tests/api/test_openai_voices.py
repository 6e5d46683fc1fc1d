"""The openai SDK's `audio.voices.create(name=, audio_sample=, consent=)` against the gateway,
sync and async: OpenAI's field names, OpenAI's voice object, a clear 400 for the transcript
Orpheus needs, and no retries of a taken name."""

from __future__ import annotations

import httpx
import openai
import pytest

from app.audio.pcm import SAMPLES_PER_FRAME
from tests.api.conftest import GatewayStarter
from tests.support.clips import chirp, encode_clip
from tests.support.metrics import scrape
from tests.support.vllm_server import VLLMServer

REF_TEXT = "This is my voice."
FRAMES = 12


@pytest.fixture(scope="module")
def url(clone_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(clone_vllm)


def sample(seed: float = 220.0) -> tuple[str, bytes, str]:
    return ("me.wav", encode_clip(chirp(1.5, 16_000, f0=seed), 16_000, "wav"), "audio/wav")


def voice_posts(url: str, status: int) -> float:
    return scrape(url).get(
        "tts_http_requests_total", method="POST", route="/v1/audio/voices", status=str(status)
    )


def test_sync_sdk_creates_uses_and_deletes_a_voice(url: str, clone_backend: VLLMServer) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k")
    voice = client.audio.voices.create(
        name="Sdk Voice",
        audio_sample=sample(),
        consent="cons_1234",
        extra_body={"reference_text": REF_TEXT},
    )
    assert voice.id.startswith("voice_") and voice.object == "audio.voice"
    assert (voice.name, voice.type) == ("Sdk Voice", "audio_sample")
    assert isinstance(voice.created_at, int) and voice.created_at > 0
    stored = httpx.get(f"{url}/v1/audio/voices/{voice.id}").json()
    assert stored["consent"] == "cons_1234" and stored["reference_text"] == REF_TEXT
    speech = client.audio.speech.create(
        model="tts-1",
        voice={"id": voice.id},  # type: ignore[arg-type]
        input="In my voice.",
        response_format="pcm",
    )
    assert len(speech.content) == FRAMES * SAMPLES_PER_FRAME * 2
    assert REF_TEXT in clone_backend.completions[-1].body["prompt"]
    deleted = client.audio.voices.delete(voice.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (voice.id, True, "audio.voice.deleted")


async def test_async_sdk_creates_a_voice(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k") as client:
        voice = await client.audio.voices.create(
            name="Async Voice",
            audio_sample=sample(260.0),
            consent="cons_5678",
            type="audio_sample",
            extra_body={"reference_text": REF_TEXT},
        )
        assert voice.type == "audio_sample" and voice.name == "Async Voice"
        with pytest.raises(openai.BadRequestError) as info:
            await client.audio.voices.create(
                name="No Text", audio_sample=sample(270.0), consent="cons_0"
            )
        assert info.value.param == "reference_text"
        await client.audio.voices.delete(voice.id)


def test_missing_transcript_is_a_clear_400(url: str, clone_backend: VLLMServer) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k")
    before = voice_posts(url, 400)
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.voices.create(name="Untold", audio_sample=sample(), consent="cons_1")
    error = info.value
    assert (error.param, error.code) == ("reference_text", "missing_required_parameter")
    assert "transcript" in error.message and "extra_body" in error.message
    assert "audio_sample" in error.message  # names the field the clip came in
    assert voice_posts(url, 400) - before == 1
    names = [v["name"] for v in httpx.get(f"{url}/v1/audio/voices").json()["data"]]
    assert "Untold" not in names


def test_a_taken_name_is_sent_once(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k")  # default: 2 retries
    first = client.audio.voices.create(
        name="Twice", audio_sample=sample(), consent="c", extra_body={"reference_text": REF_TEXT}
    )
    before = voice_posts(url, 409)
    with pytest.raises(openai.ConflictError) as info:
        client.audio.voices.create(
            name="twice", audio_sample=sample(), consent="c", extra_body={"reference_text": "x"}
        )
    assert info.value.code == "voice_name_taken"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert voice_posts(url, 409) - before == 1  # not retried as a lock timeout
    client.audio.voices.delete(first.id)


@pytest.mark.parametrize(
    ("fields", "files", "param"),
    [
        ({"type": "prompt", "reference_text": REF_TEXT}, ["audio_sample"], "type"),
        ({"reference_text": REF_TEXT}, ["audio_sample", "reference_audio"], "audio_sample"),
        ({"reference_text": REF_TEXT, "consent": "c" * 201}, ["audio_sample"], "consent"),
    ],
)
def test_bad_openai_shaped_forms(
    url: str, fields: dict[str, str], files: list[str], param: str
) -> None:
    response = httpx.post(
        f"{url}/v1/audio/voices",
        data={"name": "Bad"} | fields,
        files=[(name, sample()) for name in files],
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["code"]
