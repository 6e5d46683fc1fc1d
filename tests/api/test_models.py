"""Models: `models.retrieve(id)` for every accepted name (openai SDK, sync and async), a 404
envelope otherwise, and `GET /v1/audio/models`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

SERVED = "canopylabs/orpheus-3b-0.1-ft"  # a hub id: the path holds a slash
ACCEPTED = [SERVED, "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]


@pytest.fixture(scope="module")
def url(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir, model_name=SERVED)) as base:
        yield base


def test_sync_sdk_retrieves_every_listed_model(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    listed = [m.id for m in client.models.list()]
    assert listed == ACCEPTED
    for model_id in listed:
        model = client.models.retrieve(model_id)
        assert (model.id, model.object, model.owned_by) == (model_id, "model", "orpheus-gateway")
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("whisper-1")
    assert info.value.code == "model_not_found" and info.value.param == "model"
    assert "tts-1" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"


async def test_async_sdk_retrieves(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
        assert (await client.models.retrieve("tts-1-hd")).id == "tts-1-hd"
        assert (await client.models.retrieve(SERVED)).id == SERVED
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("tts-2")


def test_audio_models_lists_both_shapes(url: str) -> None:
    body = httpx.get(f"{url}/v1/audio/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ACCEPTED
    assert body["models"] == [{"id": m, "name": m} for m in ACCEPTED]
