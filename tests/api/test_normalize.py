"""`POST /v1/audio/normalize` over a real loopback gateway: normalized text and segments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.text.normalize import normalize_text
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

SENTENCES = [
    f"Item {i} costs ${i}.50 at {i % 12 + 1}:30 p.m., says Dr. Lee <laugh>." for i in range(1, 31)
]
LONG_INPUT = " ".join(SENTENCES)


def post(url: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/normalize", json=body, headers=headers, timeout=30)


def test_normalizes_and_segments(gateway_url: str, vllm: VLLMServer) -> None:
    text = "Dr. Smith paid $5.20 at 10:30. <laugh> Then he left, e.g. at 3pm."
    response = post(gateway_url, {"input": text})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "input": text,
        "normalized": "Doctor Smith paid five dollars and twenty cents at ten thirty. "
        "<laugh> Then he left, for example at three PM.",
        "segments": [
            "Doctor Smith paid five dollars and twenty cents at ten thirty.",
            "<laugh> Then he left, for example at three PM.",
        ],
    }
    assert vllm.completions == []  # no generation for a dry run


def test_long_input_keeps_every_word_in_order_and_starts_short(gateway_url: str) -> None:
    assert len(LONG_INPUT) >= 1500 and len(SENTENCES) >= 20
    body = post(gateway_url, {"input": LONG_INPUT}).json()
    segments = body["segments"]
    assert " ".join(segments).split() == body["normalized"].split()
    assert body["normalized"] == normalize_text(LONG_INPUT)
    assert segments[0] == (
        "Item one costs one dollar and fifty cents at two thirty PM, says Doctor Lee <laugh>."
    )
    assert len(segments) > 10
    assert all(len(s) <= 200 for s in segments)
    assert sum(s.count("<laugh>") for s in segments) == len(SENTENCES)


def test_normalize_false_segments_the_text_as_written(gateway_url: str) -> None:
    text = "Dr. Smith paid $5.20. Then he left."
    body = post(gateway_url, {"input": text, "normalize": False}).json()
    assert body["normalized"] == text
    assert body["segments"] == ["Dr. Smith paid $5.20.", "Then he left."]


def test_nothing_speakable_left_gives_no_segments(gateway_url: str) -> None:
    body = post(gateway_url, {"input": "😀 ✓"}).json()
    assert body["normalized"] == "" and body["segments"] == []


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": ""}, "input", "invalid_value"),
        ({"input": " \n\t "}, "input", "invalid_value"),
        ({"input": "x" * 201}, "input", "string_above_max_length"),
        ({}, "input", "missing_required_parameter"),
        ({"input": 5}, "input", "invalid_value"),
        ({"input": "Hi.", "normalize": "sometimes"}, "normalize", "invalid_value"),
        ({"input": "Hi.", "text": "Hi."}, "text", "unknown_field"),
    ],
)
def test_bad_input_is_a_400_in_the_openai_envelope(
    limited_gateway: str, body: object, param: str, code: str
) -> None:
    response = post(limited_gateway, body, Authorization="Bearer secret")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code
    assert error["message"]


@pytest.fixture(scope="module")
def limited_gateway(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    settings = gateway_settings(
        api_vllm.url,
        tiny_snac_dir,
        api_keys="secret",
        max_input_chars=200,
        normalize_text=False,
        segment_max_chars=40,
        segment_first_max_chars=20,
    )
    with running_gateway(settings) as url:
        yield url


def test_needs_an_api_key_like_every_endpoint(limited_gateway: str) -> None:
    response = post(limited_gateway, {"input": "Hi."})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_settings_turn_normalization_off_and_set_the_limits(limited_gateway: str) -> None:
    text = "Dr. Smith, who paid $5.20 for lunch, left at 3pm. Then he slept all day long."
    body = post(limited_gateway, {"input": text}, Authorization="Bearer secret").json()
    assert body["normalized"] == text  # NORMALIZE_TEXT=false wins over the default true
    assert body["segments"] == [
        "Dr. Smith,",  # the first clause: the next one would pass 20 characters
        "who paid $5.20 for lunch, left at 3pm.",
        "Then he slept all day long.",
    ]
