"""Deepgram `/v1/speak` as pipecat and LiveKit use it: their captured handshakes and message
sequences replayed exactly, every encoding and rate decoded back, the HTTP form."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import av
import httpx
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import Script, VLLMServer
from tests.support.ws import Received, connect, read_until, send, ws_url

CAPTURES = Path("/work/shared/reference/deepgram-speak-clients.jsonl")
FRAMES = 12
SEGMENT = FRAMES * SAMPLES_PER_FRAME
PAUSE = round(0.15 * SAMPLE_RATE)
KEY = "dg-key"
AUTH = {"Authorization": f"Token {KEY}"}
_FORMATS = {"linear16": "s16le", "mulaw": "mulaw", "alaw": "alaw"}


def captured_sessions() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(handshake, client messages) of each captured connection, in order."""
    sessions: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for line in CAPTURES.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "open":
            sessions.append((record, []))
        else:
            sessions[-1][1].append(record["msg"])
    return sessions


SESSIONS = captured_sessions()


@pytest.fixture(scope="module")
def base(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, api_keys=KEY)
    with running_gateway(settings) as url:
        yield url


@pytest.fixture
def paced(vllm: VLLMServer) -> VLLMServer:
    # Each segment takes ~0.4 s: a client's next message always arrives while one speaks.
    vllm.default_script = lambda body: Script(frames=FRAMES, delay=0.005)
    return vllm


def spoken(prompt: str) -> str:
    return prompt.split("<|begin_of_text|>", 1)[1].split("<|eot_id|>")[0]


def decode(data: bytes, encoding: str, rate: int, *, wav: bool = False) -> np.ndarray:
    options = {} if wav else {"sample_rate": str(rate), "channels": "1"}
    with av.open(
        io.BytesIO(data), format="wav" if wav else _FORMATS[encoding], options=options
    ) as container:
        assert container.streams.audio[0].rate == rate
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])


@pytest.mark.parametrize("index", range(len(SESSIONS)), ids=["pipecat", "livekit", "livekit-2"])
async def test_the_captured_client_sessions_replay_exactly(
    base: str, paced: VLLMServer, index: int
) -> None:
    handshake, messages = SESSIONS[index]
    headers = dict(handshake["headers"])
    agent = headers.pop("User-Agent")
    url = ws_url(base, handshake["path"]) + "?" + urlencode(handshake["query"])
    got = Received()
    async with connect(url, additional_headers=headers, user_agent_header=agent) as ws:
        assert ws.response is not None and ws.response.headers["dg-request-id"]
        for message in messages:
            await ws.send(json.dumps(message))
        assert await read_until(ws, got, "never", header=False) is None
    flushes = sum(1 for m in messages if m["type"] == "Flush")
    assert got.close_code == 1000
    # Metadata first, then audio, then one Flushed per Flush, in order, after the audio.
    assert got.types() == ["Metadata", "<binary>"] + ["Flushed"] * flushes
    assert [e["sequence_id"] for e in got.of("Flushed")] == list(range(flushes))
    metadata = got.of("Metadata")[0]
    assert metadata["model_name"] == handshake["query"]["model"]
    assert metadata["request_id"] == ws.response.headers["dg-request-id"]
    # Sentence by sentence, in the voice the model maps to, nothing lost.
    voice = {"aura-2-helena-en": "tara", "aura-2-andromeda-en": "leah"}[metadata["model_name"]]
    assert [spoken(r.body["prompt"]) for r in paced.completions] == [
        f"{voice}: Hello there.",
        f"{voice}: This is a test.",
    ]
    audio = np.frombuffer(got.audio(), dtype="<i2")
    assert len(audio) == 2 * SEGMENT + PAUSE


async def test_one_connection_serves_utterance_after_utterance(base: str, vllm: VLLMServer) -> None:
    got = Received()
    url = ws_url(base, "/v1/speak?model=aura-2-andromeda-en&encoding=linear16&sample_rate=24000")
    async with connect(url, additional_headers=AUTH) as ws:
        for n, text in enumerate(["First turn. ", "Second turn. ", "Third turn. "]):
            await send(ws, type="Speak", text=text)
            await send(ws, type="Flush")
            flushed = await read_until(ws, got, "Flushed", header=False)
            assert flushed == {"type": "Flushed", "sequence_id": n}
        await send(ws, type="Close")
        await read_until(ws, got, "never", header=False)
    assert len(got.audio()) == 3 * SEGMENT * 2
    assert got.close_code == 1000


EVERY_FORMAT = [("linear16", r) for r in (8000, 16000, 24000, 32000, 48000)] + [
    (e, r) for e in ("mulaw", "alaw") for r in (8000, 16000)
]


@pytest.mark.parametrize(("encoding", "rate"), EVERY_FORMAT)
async def test_every_encoding_and_rate_over_the_websocket(
    base: str, vllm: VLLMServer, encoding: str, rate: int
) -> None:
    got = Received()
    url = ws_url(base, f"/v1/speak?model=aura-2-helena-en&encoding={encoding}&sample_rate={rate}")
    async with connect(url, additional_headers=AUTH) as ws:
        await send(ws, type="Speak", text="Hello there. ")
        await send(ws, type="Flush")
        await read_until(ws, got, "Flushed", header=False)
        # Everything of the flush came before Flushed: the resampler's delay included.
        samples = decode(got.audio(), encoding, rate)
        assert len(samples) == SEGMENT * rate // SAMPLE_RATE
        await send(ws, type="Close")
        await read_until(ws, got, "never", header=False)
    assert got.close_code == 1000


async def test_speed_changes_the_tempo(base: str, vllm: VLLMServer) -> None:
    got = Received()
    url = ws_url(base, "/v1/speak?encoding=linear16&sample_rate=16000&speed=2")
    async with connect(url, additional_headers=AUTH) as ws:
        await send(ws, type="Speak", text="Hello there. ")
        await send(ws, type="Close")
        await read_until(ws, got, "never", header=False)
    samples = len(got.audio()) // 2
    assert samples == pytest.approx(SEGMENT * 16000 / SAMPLE_RATE / 2, rel=0.02)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("encoding=mp3", "encoding"),
        ("sample_rate=44100", "sample_rate"),
        ("sample_rate=fast", "sample_rate"),
        ("encoding=mulaw&sample_rate=24000", "sample_rate"),
        ("container=wav", "container"),
        ("model=aura-2-nobody-en", "model"),
        ("speed=9", "speed"),
        ("mip_opt_out=maybe", "mip_opt_out"),
        ("model=aura-%E2%98%83-en", "model"),  # quoted back in an ASCII header
    ],
)
async def test_bad_parameters_are_refused_at_the_handshake(
    base: str, vllm: VLLMServer, query: str, param: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(base, f"/v1/speak?{query}"), additional_headers=AUTH):
            pass
    response = info.value.response
    assert response.status_code == 400
    assert param.replace("_", " ") in response.headers["dg-error"].replace("_", " ")
    body = json.loads(response.body)
    assert body["err_code"] == "INVALID_QUERY_PARAMETER" and body["request_id"]
    assert not vllm.completions


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Token wrong"}, 401), ({"Authorization": f"Bearer {KEY}"}, 0)],
)
async def test_the_handshake_needs_the_key(
    base: str, vllm: VLLMServer, headers: dict[str, str], status: int
) -> None:
    url = ws_url(base, "/v1/speak")
    if status == 0:
        async with connect(url, additional_headers=headers) as ws:
            metadata = json.loads(await ws.recv())
            assert metadata["type"] == "Metadata"
        return
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=headers):
            pass
    assert info.value.response.status_code == status
    assert json.loads(info.value.response.body)["error"]["type"] == "authentication_error"


async def test_clear_stops_the_audio_and_closes_the_backend_request(
    base: str, vllm: VLLMServer
) -> None:
    vllm.default_script = lambda body: Script(frames=400, delay=0.01)
    got = Received()
    async with connect(ws_url(base, "/v1/speak"), additional_headers=AUTH) as ws:
        await send(ws, type="Speak", text="A long sentence to interrupt. And another one. ")
        await read_until(ws, got, "<binary>", header=False)
        in_flight = [r for r in vllm.completions if not r.completed]
        await send(ws, type="Clear")
        cleared = await read_until(ws, got, "Cleared", header=False)
        assert cleared == {"type": "Cleared", "sequence_id": 0}
        assert in_flight and all([await r.wait_disconnected(1.0) for r in in_flight])
        mark = len(got.events)
        vllm.default_script = None
        await send(ws, type="Speak", text="After the interruption. ")
        await send(ws, type="Flush")
        flushed = await read_until(ws, got, "Flushed", header=False)
        await send(ws, type="Close")
        await read_until(ws, got, "never", header=False)
    assert flushed == {"type": "Flushed", "sequence_id": 0}
    after = b"".join(e["data"] for e in got.events[mark:] if e["type"] == "<binary>")
    assert len(after) == SEGMENT * 2  # only the new text's audio
    assert spoken(vllm.completions[-1].body["prompt"]) == "tara: After the interruption."


async def test_unusable_messages_get_a_warning_and_the_session_goes_on(
    base: str, vllm: VLLMServer
) -> None:
    got = Received()
    async with connect(ws_url(base, "/v1/speak?model=leo"), additional_headers=AUTH) as ws:
        await ws.send("not json")
        await send(ws, type="Speak", text=5)
        await send(ws, type="Speak", text="lone \ud800 surrogate")
        await send(ws, type="Shout")
        await ws.send(b"\x00")
        await send(ws, type="Speak", text="Fine. ")
        await send(ws, type="Close")
        await read_until(ws, got, "never", header=False)
    warnings = got.of("Warning")
    assert [w["code"] for w in warnings] == [
        "INVALID_MESSAGE",
        "INVALID_TEXT",
        "INVALID_TEXT",
        "UNKNOWN_MESSAGE_TYPE",
        "INVALID_MESSAGE",
    ]
    assert all(w["description"] == w["warn_msg"] for w in warnings)
    assert spoken(vllm.completions[-1].body["prompt"]) == "leo: Fine."  # our own voice name
    assert got.close_code == 1000


async def test_a_backend_failure_is_an_error_and_close_1011(base: str, vllm: VLLMServer) -> None:
    vllm.push(Script(status=503, body={"error": {"message": "engine dead", "code": 503}}))
    got = Received()
    async with connect(ws_url(base, "/v1/speak"), additional_headers=AUTH) as ws:
        await send(ws, type="Speak", text="Hello. ")
        await send(ws, type="Flush")
        error = await read_until(ws, got, "Error", header=False)
        await read_until(ws, got, "never", header=False)
    assert error is not None and "engine dead" in error["err_msg"]
    assert got.close_code == 1011


@pytest.mark.parametrize("container", ["none", "wav"])
@pytest.mark.parametrize(("encoding", "rate"), EVERY_FORMAT)
def test_the_http_form_streams_every_encoding(
    base: str, vllm: VLLMServer, encoding: str, rate: int, container: str
) -> None:
    query = f"model=aura-2-helena-en&encoding={encoding}&sample_rate={rate}&container={container}"
    response = httpx.post(
        f"{base}/v1/speak?{query}", json={"text": "Hello there."}, headers=AUTH, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["dg-request-id"] and response.headers["dg-char-count"] == "12"
    samples = decode(response.content, encoding, rate, wav=container == "wav")
    assert len(samples) == SEGMENT * rate // SAMPLE_RATE


def test_the_http_form_defaults_to_wav_like_deepgram(base: str, vllm: VLLMServer) -> None:
    # LiveKit's synthesize(): no container parameter.
    response = httpx.post(
        f"{base}/v1/speak?model=aura-2-andromeda-en&encoding=linear16&sample_rate=24000"
        "&mip_opt_out=false",
        json={"text": "Hi."},
        headers=AUTH,
    )
    assert response.status_code == 200 and response.content[:4] == b"RIFF"
    assert response.headers["content-type"] == "audio/wav"


@pytest.mark.parametrize(
    ("query", "body", "status"),
    [
        ("encoding=opus", {"text": "Hi."}, 400),
        ("", {"text": ""}, 400),
        ("", {"words": "Hi."}, 400),
        ("", "Hi.", 400),
        ("", {"text": "lone \ud800 surrogate"}, 400),
    ],
)
def test_http_errors_are_in_deepgrams_shape(
    base: str, vllm: VLLMServer, query: str, body: object, status: int
) -> None:
    headers = AUTH | {"Content-Type": "application/json"}
    content = json.dumps(body)  # escapes a lone surrogate, as a JSON client may send it
    response = httpx.post(f"{base}/v1/speak?{query}", content=content, headers=headers)
    assert response.status_code == status
    assert response.headers["dg-error"] == response.json()["err_msg"]
    assert not vllm.completions


def test_an_http_backend_failure_is_a_502(base: str, vllm: VLLMServer) -> None:
    vllm.push(Script(status=503, body={"error": {"message": "engine dead", "code": 503}}))
    response = httpx.post(f"{base}/v1/speak", json={"text": "Hi."}, headers=AUTH)
    assert response.status_code == 502
    assert "engine dead" in response.json()["err_msg"]
