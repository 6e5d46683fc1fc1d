"""Every validation error reads as one plain envelope: no pydantic wording, a code always."""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.api.validation import describe_validation
from app.protocol import SaveVoiceForm, SpeechRequest
from tests.support.vllm_server import VLLMServer

CODES = {
    "invalid_value",
    "missing_required_parameter",
    "unknown_field",
    "string_above_max_length",
    "invalid_json",
}
PYDANTIC_WORDING = re.compile(r"Value error|Input should|VoiceRef|Field required|Extra inputs")
OK = {"model": "tts-1", "voice": "tara", "input": "Hello."}


def speech(url: str, body: object, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json=body, timeout=30, **kwargs)


def assert_plain(error: dict[str, Any]) -> None:
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] in CODES, error
    assert not PYDANTIC_WORDING.search(error["message"]), error["message"]
    assert error["message"].endswith("."), error["message"]


FORMATS = "response_format must be one of 'mp3', 'opus', 'aac', 'flac', 'wav' or 'pcm'."
MISSING = "missing_required_parameter"
BAD = "invalid_value"
VOICE_KEYS = "voice.id is required. Unknown field 'voice.idx'."
VOICE_SHAPE = 'voice must be a voice name or an object {"id": "..."}.'
CASES: list[tuple[object, str | None, str, str]] = [
    (OK | {"input": " "}, "input", "invalid_value", "input must contain text to speak."),
    ({"voice": "tara", "input": "x"}, "model", MISSING, "model is required."),
    (OK | {"voice": 5}, "voice", BAD, VOICE_SHAPE),
    (OK | {"voice": {"idx": 1}}, "voice.id", MISSING, VOICE_KEYS),
    (OK | {"voice": {"id": ""}}, "voice.id", "invalid_value", "voice.id must not be empty."),
    (OK | {"speed": 9}, "speed", "invalid_value", "speed must be at most 4.0."),
    (OK | {"response_format": "ogg"}, "response_format", BAD, FORMATS),
    (OK | {"stream": "maybe"}, "stream", "invalid_value", "stream must be true or false."),
    (OK | {"temperature": "hot"}, "temperature", "invalid_value", "temperature must be a number."),
    (OK | {"max_tokens": 1.5}, "max_tokens", "invalid_value", "max_tokens must be a whole number."),
    ([1, 2], None, "invalid_value", "The request body must be a JSON object."),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param", "code", "message"), CASES)
def test_speech_validation_errors_read_plainly(
    gateway_url: str, body: object, param: str | None, code: str, message: str
) -> None:
    response = speech(gateway_url, body)
    assert response.status_code == 400, response.text
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert_plain(error)
    assert (error["param"], error["code"], error["message"]) == (param, code, message)


def test_malformed_json_is_invalid_json(gateway_url: str) -> None:
    response = httpx.post(
        f"{gateway_url}/v1/audio/speech",
        content=b'{"model": "tts-1", "input": ',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert_plain(error)
    assert error["code"] == "invalid_json" and error["param"] is None


@pytest.mark.parametrize("client_kind", ["sync", "async"])
async def test_sdk_sees_code_and_param(
    gateway_url: str, vllm: VLLMServer, client_kind: str
) -> None:
    """Too-long `instructions` and blank `input` both carry a code, as too-long `input` does."""
    base = f"{gateway_url}/v1"
    cases = [
        ({"input": "x", "instructions": "y" * 4097}, "instructions", "string_above_max_length"),
        ({"input": "x" * 4097}, "input", "string_above_max_length"),
        ({"input": "\n"}, "input", "invalid_value"),
    ]
    for fields, param, code in cases:
        kwargs: dict[str, Any] = {"model": "tts-1", "voice": "alloy"} | fields
        with pytest.raises(openai.BadRequestError) as info:
            if client_kind == "sync":
                openai.OpenAI(base_url=base, api_key="k").audio.speech.create(**kwargs)
            else:
                async with openai.AsyncOpenAI(base_url=base, api_key="k") as client:
                    await client.audio.speech.create(**kwargs)
        assert (info.value.param, info.value.code) == (param, code)
        body = info.value.body
        assert isinstance(body, dict)
        assert_plain(body)
    assert not vllm.completions


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["id", "idx", "name"]), st.text(max_size=3), max_size=2),
)
_FIELDS = [*SpeechRequest.model_fields, "extra"]


def envelope_of(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any] | None:
    """The error a body gets through `describe_validation`; None when it is valid."""
    try:
        model.model_validate(values)
    except ValidationError as exc:
        message, param, code = describe_validation(exc.errors(include_url=False))
        return {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=len(_FIELDS)))
def test_any_bad_speech_body_gets_a_plain_message(body: dict[str, Any]) -> None:
    error = envelope_of(SpeechRequest, body)
    if error is not None:
        assert_plain(error)
        param = error["param"]
        assert param is None or param.split(".")[0] in body or error["code"] == MISSING


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from([*SaveVoiceForm.model_fields, "x"]), st.text(max_size=1100)))
def test_any_bad_form_gets_a_plain_message(form: dict[str, str]) -> None:
    error = envelope_of(SaveVoiceForm, form)
    if error is not None:
        assert_plain(error)
