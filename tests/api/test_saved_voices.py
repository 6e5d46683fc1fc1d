"""Saved voices end to end: create, list, use in /v1/audio/speech, delete, and survive a
real restart of the gateway on the same data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from app.audio.pcm import SAMPLES_PER_FRAME
from app.audio.reference import ReferenceLimits, load_reference
from app.codec.snac import SnacCodec
from app.config import Settings
from tests.api.conftest import gateway_settings
from tests.support.audio import decode_audio
from tests.support.clips import chirp, encode_clip
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

FRAMES = 12
REF_TEXT = "This is my voice."


@pytest.fixture
def vllm(clone_backend: VLLMServer) -> VLLMServer:
    """This module's backend: the cloning one, reset around each test."""
    return clone_backend


def settings_for(vllm: VLLMServer, snac: Path, data_dir: Path, **extra: object) -> Settings:
    return gateway_settings(vllm.url, snac, data_dir=data_dir, max_reference_seconds=8.0, **extra)


@pytest.fixture(scope="module")
def url(
    clone_vllm: VLLMServer, tiny_snac_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("voices")
    with running_gateway(settings_for(clone_vllm, tiny_snac_dir, data_dir)) as base:
        yield base


def clip(seconds: float = 1.5, fmt: str = "wav", seed: float = 200.0) -> bytes:
    return encode_clip(chirp(seconds, 16_000, f0=seed), 16_000, fmt)


def create(url: str, name: str, data: bytes | None = None, **fields: str) -> httpx.Response:
    form = {"name": name, "reference_text": REF_TEXT} | fields
    files = {"reference_audio": ("ref.ogg", data if data is not None else clip(), "audio/ogg")}
    return httpx.post(f"{url}/v1/audio/voices", data=form, files=files, timeout=60)


def audio_prompt_part(prompt: str) -> str:
    """The reference turn of a zero-shot prompt (up to end of AI)."""
    end = prompt.index("<custom_token_2><custom_token_6>")
    return prompt[: end + len("<custom_token_2><custom_token_6>")]


def test_create_list_get_delete(url: str, vllm: VLLMServer) -> None:
    response = create(url, "Storyteller", clip(fmt="flac"), description="calm <|eot_id|>")
    assert response.status_code == 201, response.text
    voice = response.json()
    assert voice["id"].startswith("voice_") and voice["object"] == "audio.voice"
    assert voice["name"] == "Storyteller" and voice["description"] == "calm"
    assert voice["reference_text"] == REF_TEXT
    assert voice["audio_tokens"] == 7 * round(voice["reference_seconds"] * 24_000 / 2048)
    listed = httpx.get(f"{url}/v1/audio/voices").json()
    assert listed["object"] == "list" and voice in listed["data"]
    assert httpx.get(f"{url}/v1/audio/voices/{voice['id']}").json() == voice
    speakers = httpx.get(f"{url}/v1/audio/speaker").json()["data"]
    assert {"id": voice["id"], "name": "Storyteller", "kind": "saved", "maps_to": None} in speakers
    assert any(s["kind"] == "builtin" and s["id"] == "tara" for s in speakers)
    deleted = httpx.delete(f"{url}/v1/audio/voices/{voice['id']}")
    assert deleted.json() == {"id": voice["id"], "object": "audio.voice.deleted", "deleted": True}
    for response in (
        httpx.get(f"{url}/v1/audio/voices/{voice['id']}"),
        httpx.delete(f"{url}/v1/audio/voices/{voice['id']}"),
        httpx.delete(f"{url}/v1/audio/voices/voice_0000"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert voice not in httpx.get(f"{url}/v1/audio/voices").json()["data"]
    assert not vllm.completions  # saving a voice generates nothing


def test_saved_voice_speaks_by_id_and_by_name(
    url: str, vllm: VLLMServer, tiny_codec: SnacCodec
) -> None:
    data = clip(2.0, "mp3", seed=300.0)
    voice = create(url, "Reader", data).json()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    by_id = client.audio.speech.create(
        model="tts-1",
        voice={"id": voice["id"]},  # type: ignore[arg-type]
        input="Read this.",
        response_format="wav",
    )
    samples, _ = decode_audio(by_id.content, "wav")
    assert len(samples) == FRAMES * SAMPLES_PER_FRAME
    by_id_prompt = vllm.completions[-1].body["prompt"]
    by_name = client.audio.speech.create(
        model="tts-1", voice="reader", input="Read this.", response_format="pcm"
    )
    assert len(by_name.content) == FRAMES * SAMPLES_PER_FRAME * 2
    assert vllm.completions[-1].body["prompt"] == by_id_prompt
    # The stored codes are the codec's codes of the trimmed upload, in the zero-shot layout.
    codes = tiny_codec.encode(load_reference(data, ReferenceLimits(1.0, 8.0)).pcm)
    spelled = "".join(
        f"<custom_token_{10 + slot * 4096 + int(c)}>" for row in codes for slot, c in enumerate(row)
    )
    assert audio_prompt_part(by_id_prompt) == (
        f"<custom_token_3><|begin_of_text|>{REF_TEXT}<|eot_id|>"
        f"<custom_token_4><custom_token_5><custom_token_1>{spelled}"
        "<custom_token_2><custom_token_6>"
    )
    assert by_id_prompt.endswith(
        "<custom_token_3><|begin_of_text|>Read this.<|eot_id|>"
        "<custom_token_4><custom_token_5><custom_token_1>"
    )


def test_builtin_voices_are_unaffected_and_unknown_ids_fail(url: str, vllm: VLLMServer) -> None:
    create(url, "Other", clip(seed=400.0))
    response = httpx.post(
        f"{url}/v1/audio/speech",
        json={"model": "tts-1", "voice": "tara", "input": "Plain.", "response_format": "pcm"},
        timeout=60,
    )
    assert response.status_code == 200
    assert vllm.completions[-1].body["prompt"].startswith("<custom_token_3><|begin_of_text|>tara:")
    as_ref = httpx.post(
        f"{url}/v1/audio/speech",
        json={"model": "tts-1", "voice": {"id": "Leo"}, "input": "Ref.", "response_format": "pcm"},
        timeout=60,
    )
    assert as_ref.status_code == 200
    assert vllm.completions[-1].body["prompt"].startswith("<custom_token_3><|begin_of_text|>leo:")
    for voice in ({"id": "voice_missing"}, "nobody"):
        bad = httpx.post(
            f"{url}/v1/audio/speech",
            json={"model": "tts-1", "voice": voice, "input": "x"},
            timeout=60,
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_voice"


@pytest.mark.parametrize("name", ["Duplicate", "dUPLICATE", "tara", "Alloy"])
def test_name_conflicts_are_409(url: str, vllm: VLLMServer, name: str) -> None:
    create(url, "Duplicate", clip(seed=500.0))
    response = create(url, name)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "voice_name_taken"


@pytest.mark.parametrize(
    ("form", "status", "param"),
    [
        ({"name": ""}, 400, "name"),
        ({"name": "voice_abc"}, 400, "name"),
        ({"name": "x" * 65}, 400, "name"),
        ({"reference_text": " "}, 400, "reference_text"),
        ({"colour": "red"}, 400, "colour"),
    ],
)
def test_bad_forms(url: str, form: dict[str, str], status: int, param: str) -> None:
    response = create(url, **({"name": "Fine"} | form))  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_bad_uploads(url: str) -> None:
    assert create(url, "E", b"").json()["error"]["code"] == "empty_file"
    assert create(url, "C", b"garbage" * 100).status_code == 415
    silent = encode_clip(np.zeros(32_000, dtype=np.float32), 16_000, "wav")
    assert create(url, "S", silent).json()["error"]["code"] == "silent_audio"
    missing = httpx.post(
        f"{url}/v1/audio/voices", files={"name": (None, "M"), "reference_text": (None, "t")}
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "reference_audio"
    names = [v["name"] for v in httpx.get(f"{url}/v1/audio/voices").json()["data"]]
    assert not {"E", "C", "S", "M"} & set(names)


def test_voice_that_cannot_fit_the_context_is_refused(
    clone_vllm: VLLMServer, tiny_snac_dir: Path, tmp_path: Path
) -> None:
    settings = settings_for(clone_vllm, tiny_snac_dir, tmp_path, max_model_len=256)
    with running_gateway(settings) as base:
        response = create(base, "Long", clip(3.0))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "context_length_exceeded"
        assert httpx.get(f"{base}/v1/audio/voices").json()["data"] == []


def test_voices_survive_a_restart(
    clone_vllm: VLLMServer, tiny_snac_dir: Path, tmp_path: Path
) -> None:
    settings = settings_for(clone_vllm, tiny_snac_dir, tmp_path / "state")
    with running_gateway(settings) as first:
        kept = create(first, "Kept", clip(seed=600.0)).json()
        gone = create(first, "Gone", clip(seed=700.0)).json()
        assert httpx.delete(f"{first}/v1/audio/voices/{gone['id']}").status_code == 200
        clone_vllm.reset()
        httpx.post(
            f"{first}/v1/audio/speech",
            json={"model": "tts-1", "voice": "Kept", "input": "Before.", "response_format": "pcm"},
            timeout=60,
        ).raise_for_status()
        before = clone_vllm.completions[-1].body["prompt"]
    assert (tmp_path / "state" / "voices.sqlite3").exists()
    with running_gateway(settings) as second:
        assert httpx.get(f"{second}/v1/audio/voices").json()["data"] == [kept]
        assert httpx.get(f"{second}/v1/audio/voices/{gone['id']}").status_code == 404
        clone_vllm.reset()
        response = httpx.post(
            f"{second}/v1/audio/speech",
            json={
                "model": "tts-1",
                "voice": {"id": kept["id"]},
                "input": "Before.",
                "response_format": "pcm",
            },
            timeout=60,
        )
        assert response.status_code == 200
        assert clone_vllm.completions[-1].body["prompt"] == before
        # Names stay unique across the restart.
        assert create(second, "KEPT", clip()).status_code == 409
