"""Saved voices belong to the API key that saved them: over real sockets, through httpx and
the openai SDK, on SQLite and on a real PostgreSQL server. Other keys neither list, read,
use nor delete them; admin keys share voices and manage all; each key has a quota;
listings are pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.conftest import gateway_settings
from tests.support.clips import chirp, encode_clip
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

QUOTA = 3
KEYS = {"alice": "key-alice", "bob": "key-bob", "root": "key-root"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def url(
    request: pytest.FixtureRequest,
    clone_vllm: VLLMServer,
    tiny_snac_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("owned")
    store = None
    if request.param == "postgres":
        store = request.getfixturevalue("postgres_server").fresh_database()
    settings = gateway_settings(
        clone_vllm.url,
        tiny_snac_dir,
        data_dir=data_dir,
        voice_store_url=store,
        max_reference_seconds=8.0,
        api_keys=f"{KEYS['alice']},{KEYS['bob']}",
        admin_api_keys=KEYS["root"],
        max_voices_per_key=QUOTA,
    )
    with running_gateway(settings) as base:
        yield base


@pytest.fixture
def vllm(clone_backend: VLLMServer) -> VLLMServer:
    """This module's backend: the cloning one, reset around each test."""
    return clone_backend


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def create(url: str, who: str, name: str, **fields: str) -> httpx.Response:
    clip = encode_clip(chirp(1.5, 16_000, f0=100.0 + len(name)), 16_000, "wav")
    return httpx.post(
        f"{url}/v1/audio/voices",
        data={"name": name, "reference_text": f"I am {name}."} | fields,
        files={"reference_audio": ("ref.wav", clip, "audio/wav")},
        headers=auth(who),
        timeout=60,
    )


def listing(url: str, who: str, **params: object) -> dict[str, object]:
    response = httpx.get(f"{url}/v1/audio/voices", params=params, headers=auth(who))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def names(url: str, who: str) -> set[str]:
    return {v["name"] for v in listing(url, who)["data"]}  # type: ignore[attr-defined]


def sdk(url: str, who: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[who], max_retries=0)


def speak(url: str, who: str, voice: object) -> httpx.Response:
    body = {"model": "tts-1", "voice": voice, "input": "Say it.", "response_format": "pcm"}
    return httpx.post(f"{url}/v1/audio/speech", json=body, headers=auth(who), timeout=60)


def test_a_voice_is_its_owners_alone(url: str, vllm: VLLMServer) -> None:
    mine = create(url, "alice", "Narrator")
    assert mine.status_code == 201, mine.text
    voice = mine.json()
    assert voice["shared"] is False
    assert "Narrator" in names(url, "alice") and "Narrator" not in names(url, "bob")
    bob = httpx.get(f"{url}/v1/audio/voices/{voice['id']}", headers=auth("bob"))
    assert bob.status_code == 404  # not 403: another key's voices do not exist for bob
    for ref in ({"id": voice["id"]}, "Narrator", voice["id"]):
        refused = speak(url, "bob", ref)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_voice"
    with pytest.raises(openai.NotFoundError):
        sdk(url, "bob").audio.voices.delete(voice["id"])
    speakers = httpx.get(f"{url}/v1/audio/speaker", headers=auth("bob")).json()["data"]
    assert voice["id"] not in {s["id"] for s in speakers}
    # Bob may use the same name: names are unique per key.
    theirs = create(url, "bob", "narrator")
    assert theirs.status_code == 201, theirs.text
    # Each key's name resolves to its own voice.
    vllm.reset()
    audio = sdk(url, "alice").audio.speech.create(
        model="tts-1",
        voice={"id": voice["id"]},  # type: ignore[arg-type]
        input="Mine.",
        response_format="pcm",
    )
    assert audio.content
    assert speak(url, "alice", "NARRATOR").status_code == 200
    assert speak(url, "bob", "NARRATOR").status_code == 200
    prompts = [r.body["prompt"] for r in vllm.completions]
    assert "I am Narrator." in prompts[0] and "I am Narrator." in prompts[1]
    assert "I am narrator." in prompts[2]
    # A second "narrator" of alice's own is a conflict, in any folding of the name.
    assert create(url, "alice", "ｎａｒｒａｔｏｒ").status_code == 409
    deleted = sdk(url, "alice").audio.voices.delete(voice["id"])
    assert deleted.id == voice["id"] and deleted.deleted


def test_admin_keys_share_and_manage_voices(url: str) -> None:
    refused = create(url, "alice", "Everyone", shared="true")
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "shared"
    shared = create(url, "root", "Announcer", shared="true")
    assert shared.status_code == 201, shared.text
    voice = shared.json()
    assert voice["shared"] is True
    for who in ("alice", "bob"):
        assert "Announcer" in names(url, who)
        assert speak(url, who, "announcer").status_code == 200
    forbidden = httpx.delete(f"{url}/v1/audio/voices/{voice['id']}", headers=auth("bob"))
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "permission_denied"
    private = create(url, "bob", "Secret").json()
    assert {"Announcer", "Secret"} <= names(url, "root")  # admins see every voice
    assert httpx.delete(f"{url}/v1/audio/voices/{private['id']}", headers=auth("root")).is_success
    assert sdk(url, "root").audio.voices.delete(voice["id"]).deleted
    assert "Announcer" not in names(url, "alice")


def test_each_key_has_a_quota(url: str) -> None:
    made = [create(url, "alice", f"Quota {n}") for n in range(QUOTA + 1)]
    existing = len([v for v in listing(url, "alice")["data"] if not v["shared"]])  # type: ignore[attr-defined]
    assert existing == QUOTA
    over = [r for r in made if r.status_code != 201]
    assert over and all(r.status_code == 403 for r in over)
    assert over[0].json()["error"]["code"] == "voice_quota_exceeded"
    assert "MAX_VOICES_PER_KEY" in over[0].json()["error"]["message"]
    # Another key's quota is its own; admins have none.
    assert create(url, "bob", "Quota free").status_code == 201
    assert all(create(url, "root", f"Root {n}").status_code == 201 for n in range(QUOTA + 1))
    # Deleting makes room again.
    first = next(v for v in listing(url, "alice")["data"] if not v["shared"])  # type: ignore[attr-defined]
    assert httpx.delete(f"{url}/v1/audio/voices/{first['id']}", headers=auth("alice")).is_success
    assert create(url, "alice", "Quota again").status_code == 201


def test_listings_are_pages(url: str) -> None:
    everything = listing(url, "root")
    ids = [v["id"] for v in everything["data"]]  # type: ignore[attr-defined]
    assert len(ids) >= 4 and everything["has_more"] is False
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, object] = {"limit": 2} | ({"after": after} if after else {})
        page = listing(url, "root", **params)
        data = page["data"]
        assert isinstance(data, list) and len(data) <= 2
        seen += [v["id"] for v in data]
        assert page["first_id"] == data[0]["id"] and page["last_id"] == data[-1]["id"]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ids  # oldest first, each once
    for bad in ({"limit": 0}, {"limit": 101}, {"after": "voice_nowhere"}):
        response = httpx.get(f"{url}/v1/audio/voices", params=bad, headers=auth("root"))
        assert response.status_code == 400, response.text
    # A cursor from a voice the caller cannot see is no cursor.
    hidden = next(v["id"] for v in everything["data"] if v["name"] == "Quota free")  # type: ignore[attr-defined]
    response = httpx.get(f"{url}/v1/audio/voices", params={"after": hidden}, headers=auth("alice"))
    assert response.status_code == 400 and response.json()["error"]["param"] == "after"
