"""Lone surrogates (category Cs) in any text field of any endpoint: a 400 naming the field.

They cannot be encoded as UTF-8, so before the check they failed deep inside (the
tokenizer, httpx, SQLite) as 500s. JSON carries them as `\\ud800` escapes; multipart
carries them when the body declares a charset such as `unicode_escape`, which
Starlette decodes field values with.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import GatewayStarter
from tests.support.clips import chirp, encode_clip
from tests.support.vllm_server import VLLMServer

LONE = "hi \ud800 there"
SPEECH = {"model": "tts-1", "voice": "tara", "input": "Hello.", "response_format": "pcm"}


@pytest.fixture(scope="module")
def url(clone_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(clone_vllm)


def post_json(url: str, path: str, body: dict[str, object]) -> httpx.Response:
    # json.dumps escapes the surrogate as \ud800, which is valid JSON.
    return httpx.post(
        f"{url}{path}",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def post_form(url: str, path: str, fields: dict[str, str]) -> httpx.Response:
    """A multipart body whose declared charset turns `\\ud800` escapes into surrogates."""
    boundary = "cs-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode("unicode_escape")
        + b"\r\n"
        for name, value in fields.items()
    ]
    clip = encode_clip(chirp(1.5, 16_000), 16_000, "wav")
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="reference_audio"; '
        'filename="ref.wav"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
        + clip
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={boundary}; charset=unicode_escape"
    return httpx.post(
        f"{url}{path}", content=body, headers={"Content-Type": content_type}, timeout=30
    )


def assert_names(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field, error
    assert error["code"] == "invalid_value"
    assert field in error["message"] and "surrogate" in error["message"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"input": LONE}, "input"),
        ({"voice": LONE}, "voice"),
        ({"voice": {"id": LONE}}, "voice"),
        ({"instructions": LONE}, "instructions"),
        ({"model": LONE}, "model"),
    ],
)
def test_speech_fields(url: str, override: dict[str, object], field: str) -> None:
    assert_names(post_json(url, "/v1/audio/speech", SPEECH | override), field)


def test_normalize_input(url: str) -> None:
    assert_names(post_json(url, "/v1/audio/normalize", {"input": LONE}), "input")


VC = {"reference_text": "My voice.", "generate_text": "Say this."}


@pytest.mark.parametrize("field", ["reference_text", "generate_text", "model"])
def test_vc_fields(url: str, field: str) -> None:
    assert_names(post_form(url, "/v1/audio/vc", VC | {field: LONE}), field)


SAVE = {"name": "Narrator", "reference_text": "My voice."}


@pytest.mark.parametrize("field", ["name", "reference_text", "description"])
def test_saved_voice_fields(url: str, field: str) -> None:
    assert_names(post_form(url, "/v1/audio/voices", SAVE | {field: LONE}), field)
    assert httpx.get(f"{url}/v1/audio/voices").json()["data"] == []


def test_multipart_charset_really_carries_surrogates(url: str) -> None:
    """The form above is decoded as intended: without a surrogate the same body is valid."""
    response = post_form(url, "/v1/audio/voices", SAVE | {"name": "Plain é"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Plain é"


def test_surrogate_in_a_path_is_not_a_500(url: str) -> None:
    for response in (
        httpx.get(f"{url}/v1/audio/voices/%ED%A0%80"),
        httpx.delete(f"{url}/v1/audio/voices/%ED%A0%80"),
    ):
        assert response.status_code == 404
