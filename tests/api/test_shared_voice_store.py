"""Two gateway processes sharing one PostgreSQL voice store, as replicas behind a load
balancer: a voice saved on one is used and deleted on the other; a name saved on both
at once has one winner."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.clips import chirp, encode_clip
from tests.support.gateway_process import GatewayProcess, backend_env
from tests.support.postgres import PostgresServer
from tests.support.vllm_server import VLLMServer

REF_TEXT = "This is my voice."
SPEECH = {"model": "tts-1", "input": "Hello from the other replica.", "response_format": "wav"}


@pytest.fixture(scope="module")
def backend() -> Iterator[VLLMServer]:
    # One token per prompt character: a reference's audio tokens are hundreds of them.
    with VLLMServer(max_model_len=1_000_000) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    backend: VLLMServer,
    tiny_snac_dir: Path,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    url = postgres_server.fresh_database()
    gateways = []
    for name in ("a", "b"):
        tmp = tmp_path_factory.mktemp(f"replica-{name}")  # separate DATA_DIRs: nothing shared
        env = backend_env(backend.url, tiny_snac_dir, tmp, VOICE_STORE_URL=url,
                          MAX_REFERENCE_SECONDS="8")  # fmt: skip
        gateways.append(GatewayProcess(env, tmp / "gateway.log"))
    for gateway in gateways:
        gateway.launch()
    try:
        for gateway in gateways:
            gateway.wait_ready()
        yield gateways[0], gateways[1]
    finally:
        for gateway in gateways:
            gateway.__exit__()


def save(url: str, name: str, seed: float = 200.0) -> httpx.Response:
    clip = encode_clip(chirp(1.5, 16_000, f0=seed), 16_000, "wav")
    return httpx.post(
        f"{url}/v1/audio/voices",
        data={"name": name, "reference_text": REF_TEXT},
        files={"reference_audio": ("ref.wav", clip, "audio/wav")},
        timeout=60,
    )


def test_save_on_one_replica_synthesize_and_delete_on_the_other(
    replicas: tuple[GatewayProcess, GatewayProcess], backend: VLLMServer
) -> None:
    a, b = replicas
    created = save(a.url, "Shared Narrator")
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice in httpx.get(f"{b.url}/v1/audio/voices").json()["data"]
    assert httpx.get(f"{b.url}/v1/audio/voices/{voice['id']}").json() == voice

    backend.reset()
    spoken = {}
    for gateway in (a, b):
        response = httpx.post(f"{gateway.url}/v1/audio/speech",
                              json={**SPEECH, "voice": "shared narrator"}, timeout=60)  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.content[:4] == b"RIFF"
        spoken[gateway.url] = backend.completions[-1].body["prompt"]
    # Both replicas sent the same cloning prompt: the reference's codes came from the store.
    assert spoken[a.url] == spoken[b.url] and REF_TEXT in spoken[b.url]

    deleted = httpx.delete(f"{b.url}/v1/audio/voices/{voice['id']}")
    assert deleted.status_code == 200
    assert httpx.get(f"{a.url}/v1/audio/voices/{voice['id']}").status_code == 404
    gone = httpx.post(f"{a.url}/v1/audio/speech",
                      json={**SPEECH, "voice": {"id": voice["id"]}}, timeout=30)  # fmt: skip
    assert gone.status_code == 400 and gone.json()["error"]["code"] == "invalid_voice"


def test_one_name_saved_on_both_replicas_at_once_has_one_winner(
    replicas: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = replicas
    attempts = [(a.url, "Twin"), (b.url, "TWIN"), (a.url, "twin"), (b.url, "Twin")]
    with ThreadPoolExecutor(len(attempts)) as pool:
        results = list(pool.map(lambda args: save(*args), attempts))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 409, 409, 409], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 409).json()["error"]
    assert loser["code"] == "voice_name_taken" and loser["param"] == "name"
    names = [v["name"] for v in httpx.get(f"{b.url}/v1/audio/voices").json()["data"]]
    assert [n.lower() for n in names].count("twin") == 1
