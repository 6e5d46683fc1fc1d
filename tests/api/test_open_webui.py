"""Open WebUI against the gateway, request for request as its audio router sends them.

For a custom OpenAI base URL Open WebUI lists voices with `GET {base}/audio/voices` and
reads `data["voices"]` as `[{"id", "name"}]`, lists models with `GET {base}/audio/models`
and reads `data["models"]` (both without an API key), then posts `{"input", "voice",
"model"}` (plus its `TTS_OPENAI_PARAMS`) to `{base}/audio/speech` and stores the mp3.
"""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import GatewayStarter
from tests.support.audio import decode_audio
from tests.support.clips import chirp, encode_clip
from tests.support.vllm_server import VLLMServer


@pytest.fixture(scope="module")
def base(clone_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return f"{module_gateway(clone_vllm)}/v1"


@pytest.fixture(scope="module")
def saved_voice(base: str) -> dict[str, str]:
    clip = encode_clip(chirp(1.5, 16_000), 16_000, "wav")
    response = httpx.post(
        f"{base}/audio/voices",
        data={"name": "Narrator", "reference_text": "This is my voice."},
        files={"reference_audio": ("ref.wav", clip, "audio/wav")},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    voice: dict[str, str] = response.json()
    return voice


def test_voices_and_models_as_open_webui_reads_them(base: str, saved_voice: dict[str, str]) -> None:
    data = httpx.get(f"{base}/audio/voices").json()
    available = {voice["id"]: voice["name"] for voice in data.get("voices", [])}
    assert available["tara"] == "tara"
    assert available["alloy"] == "alloy (tara)"
    assert available[saved_voice["id"]] == "Narrator"
    assert len(available) == 8 + 13 + 1
    # Our own clients keep reading the saved voices from `data`.
    assert [v["id"] for v in data["data"]] == [saved_voice["id"]]
    models = httpx.get(f"{base}/audio/models").json().get("models", [])
    assert {"id": "tts-1", "name": "tts-1"} in models


@pytest.mark.parametrize("voice", ["tara", "nova", "saved"])
def test_speech_with_a_listed_voice(
    base: str, clone_vllm: VLLMServer, saved_voice: dict[str, str], voice: str
) -> None:
    voices = [v["id"] for v in httpx.get(f"{base}/audio/voices").json()["voices"]]
    chosen = saved_voice["id"] if voice == "saved" else voice
    assert chosen in voices
    model = httpx.get(f"{base}/audio/models").json()["models"][0]["id"]
    payload = {"input": "Hello from the chat.", "voice": chosen, "model": model} | {"speed": 1.0}
    response = httpx.post(
        f"{base}/audio/speech",
        json=payload,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-unused"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("audio/mpeg")
    samples, _ = decode_audio(response.content, "mp3")
    assert len(samples) > 0
    prompt = clone_vllm.completions[-1].body["prompt"]
    if voice == "saved":
        assert "This is my voice." in prompt  # the reference turn of the saved voice
    else:
        assert ("mia:" if voice == "nova" else "tara:") in prompt
