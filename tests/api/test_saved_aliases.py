"""VOICE_ALIASES onto saved voices: an OpenAI voice name (all pipecat's OpenAITTSService
lets through) speaks in a saved voice, by name or by id; a missing target is a clear 400."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest

from app.audio.pcm import SAMPLES_PER_FRAME
from app.config import Settings
from tests.api.conftest import gateway_settings
from tests.support.clips import chirp, encode_clip
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

REF_TEXT = "The narrator speaks."
FRAMES = 12


def settings_for(vllm: VLLMServer, snac: Path, data_dir: Path, aliases: dict[str, str]) -> Settings:
    return gateway_settings(vllm.url, snac, data_dir=data_dir, voice_aliases=json.dumps(aliases))


def save(url: str, name: str) -> str:
    response = httpx.post(
        f"{url}/v1/audio/voices",
        data={"name": name, "reference_text": REF_TEXT},
        files={"reference_audio": ("n.wav", encode_clip(chirp(1.5, 16_000), 16_000), "audio/wav")},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    voice_id: str = response.json()["id"]
    return voice_id


async def _pipecat_like(url: str, voice: str) -> bytes:
    async with (
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client,
        client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice=voice, input="Hello from the agent.",
            response_format="pcm",
        ) as response,
    ):  # fmt: skip
        return b"".join([chunk async for chunk in response.iter_bytes()])


def pipecat_like(url: str, voice: str) -> bytes:
    """What pipecat's OpenAITTSService sends: the async SDK, pcm at 24 kHz, an OpenAI name."""
    return asyncio.run(_pipecat_like(url, voice))


def test_aliases_reach_saved_voices(
    clone_backend: VLLMServer, tiny_snac_dir: Path, tmp_path: Path
) -> None:
    aliases = {"alloy": "Narrator", "echo": "zac"}
    with running_gateway(settings_for(clone_backend, tiny_snac_dir, tmp_path, aliases)) as url:
        with pytest.raises(openai.BadRequestError) as info:
            pipecat_like(url, "alloy")
        assert info.value.code == "invalid_voice" and info.value.param == "voice"
        assert "'Narrator'" in info.value.message and "VOICE_ALIASES" in info.value.message
        voice_id = save(url, "Narrator")
        audio = pipecat_like(url, "alloy")
        assert len(audio) == FRAMES * SAMPLES_PER_FRAME * 2
        by_name = clone_backend.completions[-1].body["prompt"]
        assert REF_TEXT in by_name  # the saved voice's reference turn
        pipecat_like(url, "echo")
        assert "zac: Hello" in clone_backend.completions[-1].body["prompt"]
        listed = {v["id"]: v["name"] for v in httpx.get(f"{url}/v1/audio/voices").json()["voices"]}
        assert listed["alloy"] == "alloy (Narrator)"
        # A saved voice may not take an alias's name.
        taken = httpx.post(
            f"{url}/v1/audio/voices",
            data={"name": "Alloy", "reference_text": REF_TEXT},
            files={"reference_audio": ("n.wav", b"x", "audio/wav")},
        )
        assert taken.status_code == 409
    aliases = {"nova": voice_id}  # by id, after a restart on the same store
    with running_gateway(settings_for(clone_backend, tiny_snac_dir, tmp_path, aliases)) as url:
        pipecat_like(url, "nova")
        assert clone_backend.completions[-1].body["prompt"] == by_name
        assert httpx.delete(f"{url}/v1/audio/voices/{voice_id}").status_code == 200
        gone = httpx.post(
            f"{url}/v1/audio/speech",
            json={"model": "tts-1", "voice": "nova", "input": "x"},
        )
        assert gone.status_code == 400 and gone.json()["error"]["code"] == "invalid_voice"
