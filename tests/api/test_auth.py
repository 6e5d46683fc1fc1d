"""API keys over real sockets: Bearer keys from API_KEYS and API_KEYS_FILE, OpenAI envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus

from app.api.auth import ApiKeyMiddleware, bearer_token, load_api_keys
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape
from tests.support.vllm_server import VLLMServer
from tests.support.ws import connect, ws_url

SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hi.", "response_format": "pcm"}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text("# team keys\n\n  file-key-2  \nfile-key-3\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def secured(api_vllm: VLLMServer, tiny_snac_dir: Path, keys_file: Path) -> Iterator[str]:
    settings = gateway_settings(
        api_vllm.url, tiny_snac_dir, api_keys="env-key-1", api_keys_file=keys_file
    )
    with running_gateway(settings) as url:
        yield url


def test_keys_come_from_list_and_file(tiny_snac_dir: Path, keys_file: Path) -> None:
    settings = gateway_settings("http://x", tiny_snac_dir, api_keys="a, b", api_keys_file=keys_file)
    assert load_api_keys(settings) == {"a", "b", "file-key-2", "file-key-3"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
        ({"Authorization": "Basic env-key-1"}, "missing_api_key"),
        ({"Authorization": "Bearer env-key-1x"}, "invalid_api_key"),
        ({"Authorization": "Bearer # team keys"}, "invalid_api_key"),
    ],
)
def test_requests_without_a_valid_key_get_401(
    secured: str, vllm: VLLMServer, headers: dict[str, str], code: str
) -> None:
    response = httpx.post(f"{secured}/v1/audio/speech", json=SPEECH, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and error["code"] == code
    assert not vllm.completions  # refused before any backend work


@pytest.mark.parametrize("key", ["env-key-1", "file-key-2", "file-key-3"])
def test_every_configured_key_is_accepted(secured: str, vllm: VLLMServer, key: str) -> None:
    client = openai.OpenAI(base_url=f"{secured}/v1", api_key=key, max_retries=0)
    audio = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello.", response_format="pcm"
    )
    assert len(audio.content) > 0
    assert len(client.models.list().data) >= 1


def test_sdk_sees_an_authentication_error(secured: str) -> None:
    client = openai.OpenAI(base_url=f"{secured}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert info.value.code == "invalid_api_key"


@pytest.mark.parametrize("path", ["/health", "/live", "/ready", "/metrics", "/openapi.json"])
def test_probes_are_public_by_default(secured: str, path: str) -> None:
    assert httpx.get(f"{secured}{path}", timeout=10).status_code == 200


def test_protect_health_guards_probes_and_metrics(
    api_vllm: VLLMServer, tiny_snac_dir: Path
) -> None:
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, api_keys="k1", protect_health=True)
    with running_gateway(settings) as url:
        for path in ("/health", "/live", "/ready", "/metrics"):
            assert httpx.get(f"{url}{path}", timeout=10).status_code == 401
            ok = httpx.get(f"{url}{path}", headers={"Authorization": "Bearer k1"}, timeout=10)
            assert ok.status_code == 200


def test_no_keys_means_open(gateway_url: str) -> None:
    assert httpx.get(f"{gateway_url}/v1/models").status_code == 200


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_only_exact_keys_match(key: str, token: str) -> None:
    middleware = ApiKeyMiddleware(lambda *_: None, [key], ())  # type: ignore[arg-type]
    assert middleware._matches(token) == (token == key)


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1))
def test_bearer_token_parsing(token: str) -> None:
    scope = {"headers": [(b"authorization", f"Bearer {token}".encode())]}
    assert bearer_token(scope) == token
    # Deepgram's scheme carries the same key; others carry none.
    assert bearer_token({"headers": [(b"authorization", f"Token {token}".encode())]}) == token
    assert bearer_token({"headers": [(b"authorization", f"Basic {token}".encode())]}) is None


def test_the_token_scheme_is_accepted_over_http(secured: str, vllm: VLLMServer) -> None:
    response = httpx.post(
        f"{secured}/v1/audio/speech", json=SPEECH, headers={"Authorization": "Token file-key-2"}
    )
    assert response.status_code == 200 and response.content


@pytest.mark.parametrize("path", ["/v1/audio/speech/stream", "/v1/speak"])
async def test_websocket_handshakes_need_a_key(secured: str, vllm: VLLMServer, path: str) -> None:
    url = ws_url(secured, path)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers):
                pass
        response = refused.value.response
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert json.loads(response.body)["error"]["type"] == "authentication_error"
    for scheme in ("Bearer", "Token"):
        async with connect(url, additional_headers={"Authorization": f"{scheme} env-key-1"}) as ws:
            await ws.send(json.dumps({"type": "keepalive"}))
    assert not vllm.completions


# --- key guessing ---------------------------------------------------------------------

GUESSES = 5


@pytest.fixture(scope="module")
def guarded(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    settings = gateway_settings(
        api_vllm.url, tiny_snac_dir, api_keys="the-key", auth_failures_per_minute=GUESSES
    )
    with running_gateway(settings) as url:
        yield url


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_guessing_keys_is_limited_per_address(guarded: str) -> None:
    url = f"{guarded}/v1/models"
    with from_address("127.0.0.2") as guesser, from_address("127.0.0.3") as other:
        statuses = [
            guesser.get(url, headers={"Authorization": f"Bearer guess-{n}"}).status_code
            for n in range(GUESSES + 20)
        ]
        assert statuses[:GUESSES] == [401] * GUESSES
        assert set(statuses[GUESSES:]) == {429}
        refused = guesser.get(url, headers={"Authorization": "Bearer guess-x"})
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "too_many_auth_failures"
        assert 1 <= int(refused.headers["retry-after"]) <= 60 / GUESSES + 1
        # Even the right key waits: otherwise guessing would still run at full speed,
        # the one non-429 answer giving the key away.
        assert guesser.get(url, headers={"Authorization": "Bearer the-key"}).status_code == 429
        # Another address is not affected, nor are requests that send no key at all.
        assert other.get(url, headers={"Authorization": "Bearer the-key"}).status_code == 200
        assert other.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guesser.get(url).status_code == 401
    client = openai.OpenAI(base_url=f"{guarded}/v1", api_key="the-key", max_retries=0)
    assert client.models.list().data  # from 127.0.0.1
    counted = scrape(guarded).get("tts_errors_total", cause="too_many_auth_failures")
    assert counted >= 21
