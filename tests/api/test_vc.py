"""`POST /v1/audio/vc` end to end: multipart upload → PyAV → SNAC encode → zero-shot
prompt at the vLLM-compatible server → streamed audio; and every bad upload."""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.audio.reference import ReferenceLimits, load_reference
from app.codec.snac import SnacCodec
from app.codec.tokens import FrameAssembler, frames_to_token_ids
from app.service.cloning import estimate_text_tokens
from app.vocab import CUSTOM_TOKEN_BASE
from tests.api.conftest import GatewayStarter
from tests.support.audio import decode_audio
from tests.support.clips import chirp, encode_clip
from tests.support.vllm_server import VLLMServer

MAX_UPLOAD = 200_000
LIMITS = ReferenceLimits(min_seconds=1.0, max_seconds=6.0)
FRAMES = 12  # the test server's default script
REF_TEXT = "The quick brown fox jumps."


@pytest.fixture
def vllm(clone_backend: VLLMServer) -> VLLMServer:
    """This module's backend: the cloning one, reset around each test."""
    return clone_backend


@pytest.fixture(scope="module")
def url(clone_vllm: VLLMServer, module_gateway: GatewayStarter) -> str:
    return module_gateway(
        clone_vllm,
        max_upload_bytes=MAX_UPLOAD,
        min_reference_seconds=LIMITS.min_seconds,
        max_reference_seconds=LIMITS.max_seconds,
    )


def clip(seconds: float = 2.0, fmt: str = "wav", *, silence: float = 0.5) -> bytes:
    rate = 22_050
    quiet = np.zeros(round(silence * rate), dtype=np.float32)
    return encode_clip(np.concatenate([quiet, chirp(seconds, rate), quiet]), rate, fmt)


def expected_prompt(data: bytes, codec: SnacCodec, ref_text: str, text: str) -> str:
    frames = codec.encode(load_reference(data, LIMITS).pcm)
    audio = "".join(f"<custom_token_{t - CUSTOM_TOKEN_BASE}>" for t in frames_to_token_ids(frames))
    return (
        f"<custom_token_3><|begin_of_text|>{ref_text}"
        "<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
        f"{audio}<custom_token_2><custom_token_6>"
        f"<custom_token_3><|begin_of_text|>{text}"
        "<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
    )


def post_vc(
    url: str,
    data: bytes | None,
    *,
    filename: str = "ref.wav",
    file_field: str = "reference_audio",
    **fields: str,
) -> httpx.Response:
    form = {"reference_text": REF_TEXT, "generate_text": "Hello from a clone."} | fields
    form = {k: v for k, v in form.items() if v is not None}
    files = {file_field: (filename, data, "application/octet-stream")} if data is not None else None
    return httpx.post(f"{url}/v1/audio/vc", data=form, files=files, timeout=60)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code, error
    message: str = error["message"]
    return message


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "ogg", "m4a"])
def test_clone_prompt_layout_exact(
    url: str, vllm: VLLMServer, tiny_codec: SnacCodec, fmt: str
) -> None:
    data = clip(fmt=fmt)
    response = post_vc(url, data, filename=f"ref.{fmt}", response_format="wav", stream="false")
    assert response.status_code == 200, response.text
    samples, _ = decode_audio(response.content, "wav")
    assert len(samples) == FRAMES * SAMPLES_PER_FRAME
    body = vllm.completions[-1].body
    assert body["prompt"] == expected_prompt(data, tiny_codec, REF_TEXT, "Hello from a clone.")
    assert body["stop_token_ids"] == [128258]
    # The audio tokens decode back, slot by slot, to the codec's frames of the reference.
    ids = [CUSTOM_TOKEN_BASE + int(n) for n in re.findall(r"<custom_token_(\d+)>", body["prompt"])]
    frames = FrameAssembler(policy="fail").feed(ids)
    np.testing.assert_array_equal(frames, tiny_codec.encode(load_reference(data, LIMITS).pcm))


def test_texts_are_sanitized_and_sampling_passed(url: str, vllm: VLLMServer) -> None:
    response = post_vc(
        url,
        clip(),
        reference_text="Ref <|eot_id|>text<custom_token_5>",
        generate_text="Say <custom_token_2>this",
        temperature="0.3",
        repetition_penalty="1.3",
        max_tokens="700",
        response_format="pcm",
    )
    assert response.status_code == 200, response.text
    body = vllm.completions[-1].body
    assert "<|begin_of_text|>Ref text<|eot_id|>" in body["prompt"]
    assert body["prompt"].endswith(
        "<custom_token_3><|begin_of_text|>Say this<|eot_id|>"
        "<custom_token_4><custom_token_5><custom_token_1>"
    )
    assert body["temperature"] == 0.3 and body["repetition_penalty"] == 1.3
    assert body["max_tokens"] == 700
    assert len(response.content) == FRAMES * SAMPLES_PER_FRAME * 2


def test_openai_sdk_raw_multipart(url: str, vllm: VLLMServer) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    response = client.post(
        "/audio/vc",
        cast_to=httpx.Response,
        body={
            "reference_text": REF_TEXT,
            "generate_text": "Through the SDK.",
            "model": "tts-1",
            "response_format": "flac",
        },
        files=[("reference_audio", ("ref.mp3", clip(fmt="mp3"), "audio/mpeg"))],
        options={"headers": {"Content-Type": "multipart/form-data"}},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/flac"
    samples, rate = decode_audio(response.content, "flac")
    assert rate == SAMPLE_RATE and len(samples) == FRAMES * SAMPLES_PER_FRAME
    assert "Through the SDK." in vllm.completions[-1].body["prompt"]


def test_streams_sse_like_speech(url: str, vllm: VLLMServer) -> None:
    files = {"reference_audio": ("ref.flac", clip(fmt="flac"), "audio/flac")}
    form = {
        "reference_text": REF_TEXT,
        "generate_text": "Events",
        "response_format": "pcm",
        "stream_format": "sse",
    }
    with httpx.stream("POST", f"{url}/v1/audio/vc", data=form, files=files, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(x[6:]) for x in response.iter_lines() if x.startswith("data: ")]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) == FRAMES * SAMPLES_PER_FRAME * 2
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["output_tokens"] == FRAMES * 7


def test_a_long_text_is_cloned_segment_by_segment_within_the_context(
    url: str, vllm: VLLMServer
) -> None:
    """Each sentence group is its own zero-shot request with the reference, its budget
    within MAX_MODEL_LEN; together the requests speak exactly the text."""
    sentences = [f"Sentence number {word} is here." for word in ("one", "two", "three")] * 12
    text = " ".join(sentences)
    data = clip(5.5, "mp3", silence=0.2)
    response = post_vc(url, data, filename="r.mp3", generate_text=text, response_format="pcm")
    assert response.status_code == 200, response.text
    bodies = [r.body for r in vllm.completions]
    assert len(bodies) >= 3
    spoken = []
    for body in bodies:
        # Ten of the control tokens are custom tokens too (BOS and EOT twice are not).
        audio_tokens = len(re.findall(r"<custom_token_(\d+)>", body["prompt"])) - 10
        new_text = body["prompt"].rsplit("<|begin_of_text|>", 1)[1].split("<|eot_id|>")[0]
        spoken.append(new_text)
        prompt_estimate = 14 + audio_tokens + estimate_text_tokens(REF_TEXT)
        prompt_estimate += estimate_text_tokens(new_text)
        assert body["max_tokens"] <= 4096 - prompt_estimate
        assert REF_TEXT in body["prompt"]
    assert " ".join(spoken).split() == text.split()
    assert len(response.content) == len(bodies) * FRAMES * SAMPLES_PER_FRAME * 2 + (
        (len(bodies) - 1) * round(0.15 * SAMPLE_RATE) * 2  # the pause between segments
    )


def test_context_budget_exceeded_says_by_how_much(url: str, vllm: VLLMServer) -> None:
    response = post_vc(url, clip(), max_tokens="4000")
    message = assert_error(response, 400, "context_length_exceeded")
    assert response.json()["error"]["param"] == "max_tokens"
    over = int(re.search(r"(\d+) tokens too many", message).group(1))  # type: ignore[union-attr]
    fits = post_vc(url, clip(), max_tokens=str(4000 - over), response_format="pcm")
    assert fits.status_code == 200, fits.text
    again = post_vc(url, clip(), max_tokens=str(4000 - over + 1))
    assert_error(again, 400, "context_length_exceeded")
    assert len(vllm.completions) == 1  # refusals never reach the backend


# --- bad uploads ---------------------------------------------------------------------


def test_empty_file(url: str, vllm: VLLMServer) -> None:
    assert_error(post_vc(url, b""), 400, "empty_file")


def test_corrupt_file(url: str, vllm: VLLMServer) -> None:
    assert_error(post_vc(url, b"definitely not audio " * 200), 415, "unsupported_media_type")


def test_truncated_file(url: str, vllm: VLLMServer) -> None:
    data = clip(fmt="mp3")
    response = post_vc(url, data[:400], filename="ref.mp3")
    assert response.status_code in (400, 415), response.text


def test_silent_file(url: str, vllm: VLLMServer) -> None:
    silent = encode_clip(np.zeros(3 * 22_050, dtype=np.float32), 22_050, "wav")
    assert_error(post_vc(url, silent), 400, "silent_audio")


def test_too_short_after_trimming(url: str, vllm: VLLMServer) -> None:
    message = assert_error(post_vc(url, clip(0.5, silence=1.0)), 400, "audio_too_short")
    assert "after trimming" in message


def test_too_long(url: str, vllm: VLLMServer) -> None:
    data = encode_clip(chirp(7.0, 8_000), 8_000, "mp3")
    assert_error(post_vc(url, data, filename="long.mp3"), 400, "audio_too_long")


def test_too_large_with_content_length(url: str, vllm: VLLMServer) -> None:
    message = assert_error(post_vc(url, b"\0" * (MAX_UPLOAD + 1)), 413, "payload_too_large")
    assert str(MAX_UPLOAD) in message


def test_too_large_chunked_is_refused_while_streaming(url: str, vllm: VLLMServer) -> None:
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="reference_audio"; '
        'filename="x.wav"\r\n\r\n'
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(MAX_UPLOAD // 16_384 + 4):
            yield b"\0" * 16_384

    response = httpx.post(
        f"{url}/v1/audio/vc",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


def test_oversized_body_is_refused_before_it_is_sent(url: str) -> None:
    """With a Content-Length over the limit the answer comes without reading the body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/audio/vc HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=zz\r\n"
            b"Content-Length: 999999999\r\n\r\n"
        )
        reply = sock.recv(65_536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"file_field": "audio"}, "audio"),
        ({"reference_txt": "typo"}, "reference_txt"),
    ],
)
def test_wrong_field_names(url: str, vllm: VLLMServer, kwargs: dict[str, str], param: str) -> None:
    message = assert_error(post_vc(url, clip(), **kwargs), 400, "unknown_field")
    assert repr(param) in message and "reference_audio" in message


def test_missing_file(url: str, vllm: VLLMServer) -> None:
    response = post_vc(url, None)
    # Without files httpx sends a urlencoded form: not multipart.
    assert_error(response, 415, "unsupported_media_type")
    multipart_without_file = httpx.post(
        f"{url}/v1/audio/vc",
        files={"reference_text": (None, REF_TEXT), "generate_text": (None, "x")},
        timeout=60,
    )
    message = assert_error(multipart_without_file, 400, "missing_required_parameter")
    assert "reference_audio" in message


@pytest.mark.parametrize("value", [None, "", "  <|eot_id|> "])
def test_reference_text_missing(url: str, vllm: VLLMServer, value: str | None) -> None:
    files = {"reference_audio": ("ref.wav", clip(), "audio/wav")}
    form = {"generate_text": "x"} | ({"reference_text": value} if value is not None else {})
    response = httpx.post(f"{url}/v1/audio/vc", data=form, files=files, timeout=60)
    message = assert_error(response, 400)
    assert response.json()["error"]["param"] == "reference_text", message
    assert not vllm.completions


def test_invalid_field_values(url: str, vllm: VLLMServer) -> None:
    assert_error(post_vc(url, clip(), temperature="hot"), 400)
    assert_error(post_vc(url, clip(), response_format="ogg"), 400)
    assert_error(post_vc(url, clip(), model="nope"), 400, "model_not_found")
    assert_error(post_vc(url, clip(), generate_text="   "), 400)
    assert not vllm.completions


def test_file_sent_as_text_field(url: str, vllm: VLLMServer) -> None:
    response = httpx.post(
        f"{url}/v1/audio/vc",
        files={
            "reference_audio": (None, "not a file"),
            "reference_text": (None, REF_TEXT),
            "generate_text": (None, "x"),
        },
        timeout=60,
    )
    assert_error(response, 400)
