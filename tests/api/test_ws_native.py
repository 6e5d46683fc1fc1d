"""`/v1/audio/speech/stream` end to end: the websockets client over loopback, the real
gateway, the scriptable vLLM-compatible backend."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.metrics import scrape, wait_idle
from tests.support.vllm_server import Script, VLLMServer
from tests.support.ws import Received, connect, read_until, send, ws_url

FRAMES = 12  # the test server's default script
SEGMENT_BYTES = FRAMES * SAMPLES_PER_FRAME * 2
PAUSE_BYTES = round(0.15 * SAMPLE_RATE) * 2
PATH = "/v1/audio/speech/stream"


@pytest.fixture(scope="module")
def url(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir)) as base:
        yield ws_url(base, PATH)


def spoken(prompt: str) -> str:
    return prompt.split("<|begin_of_text|>", 1)[1].split("<|eot_id|>")[0].split(": ", 1)[1]


async def test_text_streams_in_and_each_sentence_is_spoken_as_it_completes(
    url: str, vllm: VLLMServer
) -> None:
    got = Received()
    async with connect(url) as ws:
        await send(ws, type="session.update", voice="tara", response_format="pcm")
        ready = await read_until(ws, got, "session.ready")
        assert ready is not None and ready["sample_rate"] == SAMPLE_RATE
        for piece in ["Hello", " there.", " This is", " a te"]:
            await send(ws, type="input_text.append", text=piece)
        # The first sentence is spoken while the second is still being written.
        first = await read_until(ws, got, "segment.done")
        assert first is not None and first["segment"] == 0 and first["text"] == "Hello there."
        assert [spoken(r.body["prompt"]) for r in vllm.completions] == ["Hello there."]
        await send(ws, type="input_text.append", text="st.")
        await send(ws, type="input_text.flush")
        await read_until(ws, got, "input_text.flushed")
        await send(ws, type="input_text.done")
        done = await read_until(ws, got, "session.done")
        assert await read_until(ws, got, "never") is None
    assert got.close_code == 1000
    assert [spoken(r.body["prompt"]) for r in vllm.completions] == [
        "Hello there.",
        "This is a test.",
    ]
    assert got.types() == [
        "session.ready",
        "<binary>",
        "segment.done",
        "<binary>",
        "segment.done",
        "input_text.flushed",
        "session.done",
    ]
    # Segment 0 ended before more text came: it fades out into the pause; segment 1 ended
    # at the flush: exact.
    assert len(got.audio(0)) == SEGMENT_BYTES + PAUSE_BYTES
    assert len(got.audio(1)) == SEGMENT_BYTES
    frames = got.of("<binary>")
    assert [f["sequence"] for f in frames] == list(range(len(frames)))
    second = got.of("segment.done")[1]
    assert second["last"] and second["usage"]["output_tokens"] == FRAMES * 7
    assert second["timings"]["first_audio_ms"] >= 0
    assert done is not None and done["usage"]["output_tokens"] == 2 * FRAMES * 7


async def test_audio_as_base64_events(url: str, vllm: VLLMServer) -> None:
    got = Received()
    async with connect(url) as ws:
        await send(ws, type="session.update", audio="base64", response_format="pcm")
        await send(ws, type="input_text.append", text="Hi there.")
        await send(ws, type="input_text.done")
        await read_until(ws, got, "session.done")
    deltas = got.of("audio.delta")
    assert [d["sequence"] for d in deltas] == list(range(len(deltas)))
    assert {d["segment"] for d in deltas} == {0}
    assert sum(len(base64.b64decode(d["audio"])) for d in deltas) == SEGMENT_BYTES


async def test_each_utterance_is_a_complete_stream_in_the_format(
    url: str, vllm: VLLMServer
) -> None:
    got = Received()
    async with connect(url) as ws:
        await send(ws, type="session.update", response_format="mp3")
        for text in ("First utterance.", "Second one."):
            await send(ws, type="input_text.append", text=text)
            await send(ws, type="input_text.flush")
            await read_until(ws, got, "input_text.flushed")
        await send(ws, type="input_text.done")
        await read_until(ws, got, "session.done")
    for segment in (0, 1):
        with av.open(io.BytesIO(got.audio(segment)), format="mp3") as container:
            samples = sum(f.samples for f in container.decode(audio=0))
        # mp3 adds the encoder's priming and padding, less than two frames of 1152.
        assert FRAMES * SAMPLES_PER_FRAME <= samples < FRAMES * SAMPLES_PER_FRAME + 2304


async def test_clear_cancels_generation_and_drops_queued_text(url: str, vllm: VLLMServer) -> None:
    vllm.default_script = lambda body: Script(frames=400, delay=0.01)
    got = Received()
    async with connect(url) as ws:
        await send(ws, type="session.update")
        text = " ".join(f"Sentence number {n} is here." for n in range(10))
        await send(ws, type="input_text.append", text=text)
        await read_until(ws, got, "<binary>")
        in_flight = [r for r in vllm.completions if not r.completed]
        assert in_flight
        await send(ws, type="input_text.clear")
        await read_until(ws, got, "input_text.cleared")
        cleared_at = len(got.events)
        assert all([await r.wait_disconnected(1.0) for r in in_flight])
        requests = len(vllm.completions)
        vllm.default_script = None
        await send(ws, type="input_text.append", text="Something new.")
        await send(ws, type="input_text.done")
        await read_until(ws, got, "never")
    after = got.events[cleared_at:]
    # Nothing of the cleared text after `cleared`: only the new segment's audio.
    assert {e["segment"] for e in after if e["type"] == "<binary>"} == {
        max(e["segment"] for e in after if e["type"] == "<binary>")
    }
    assert [spoken(r.body["prompt"]) for r in vllm.completions[requests:]] == ["Something new."]
    assert got.close_code == 1000
    assert (
        wait_idle(url.replace("ws://", "http://").removesuffix(PATH)).get("tts_active_streams") == 0
    )


async def test_done_speaks_everything_queued_then_closes(url: str, vllm: VLLMServer) -> None:
    got = Received()
    async with connect(url) as ws:
        await send(ws, type="input_text.append", text="One here. Two here. Three")
        await send(ws, type="input_text.append", text=" here.")
        await send(ws, type="input_text.done")
        await read_until(ws, got, "never")
    assert got.close_code == 1000
    assert got.of("session.ready")  # defaults, without a session.update
    assert got.of("segment.done")[0]["text"] == "One here."
    texts = " ".join(e["text"] for e in got.of("segment.done"))
    assert texts.split() == ["One", "here.", "Two", "here.", "Three", "here."]
    assert got.types()[-1] == "session.done"
    base = url.replace("ws://", "http://").removesuffix(PATH)
    assert scrape(base).get("tts_websocket_sessions_total", protocol="native", close_code="1000")


async def _error_after(url: str, *messages: str | bytes) -> dict[str, object]:
    got = Received()
    async with connect(url) as ws:
        for message in messages:
            await ws.send(message)
        error = await read_until(ws, got, "error")
        assert error is not None
        # A bad message does not end the session.
        await send(ws, type="input_text.append", text="Still here.")
        await send(ws, type="input_text.done")
        assert await read_until(ws, got, "session.done") is not None
    return error["error"]  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("message", "code", "param"),
    [
        ("{not json", "invalid_message", None),
        (b"\x00\x01", "invalid_message", None),
        ('{"type": "speak"}', "unknown_message_type", "type"),
        ('["input_text.append"]', "unknown_message_type", "type"),
        ('{"type": "input_text.append"}', "missing_required_parameter", "text"),
        ('{"type": "input_text.append", "text": 5}', "invalid_value", "text"),
        ('{"type": "input_text.append", "text": "a \\ud800"}', "invalid_value", "text"),
        ('{"type": "session.update", "voice": "\\udfff"}', "invalid_value", "voice"),
        ('{"type": "input_text.flush", "now": true}', "invalid_message", None),
        ('{"type": "session.update", "speed": 9}', "invalid_value", "speed"),
        ('{"type": "session.update", "voices": "tara"}', "unknown_field", "voices"),
        ('{"type": "session.update", "response_format": "ogg"}', "invalid_value", None),
        ('{"type": "session.update", "voice": "nobody"}', "invalid_voice", "voice"),
    ],
)
async def test_every_bad_message_gets_an_error_and_the_session_goes_on(
    url: str, vllm: VLLMServer, message: str, code: str, param: str | None
) -> None:
    error = await _error_after(url, message)
    assert error["code"] == code and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert error["message"]


async def test_changing_the_session_while_it_speaks_is_refused(url: str, vllm: VLLMServer) -> None:
    vllm.default_script = lambda body: Script(frames=FRAMES, delay=0.02)
    error = await _error_after(
        url,
        '{"type": "input_text.append", "text": "Speaking now. "}',
        '{"type": "session.update", "voice": "leo"}',
    )
    assert error["code"] == "session_busy"


async def test_after_done_more_text_is_refused_and_the_end_still_comes(
    url: str, vllm: VLLMServer
) -> None:
    got = Received()
    async with connect(url) as ws:
        await send(ws, type="input_text.append", text="Last words.")
        await send(ws, type="input_text.done")
        await send(ws, type="input_text.append", text="One more.")
        await send(ws, type="input_text.flush")
        await read_until(ws, got, "never")
    assert [e["error"]["code"] for e in got.of("error")] == ["session_finishing"] * 2
    assert [e["text"] for e in got.of("segment.done")] == ["Last words."]
    assert got.types()[-1] == "session.done" and got.close_code == 1000


async def test_a_backend_failure_is_reported_and_closes_1011(url: str, vllm: VLLMServer) -> None:
    vllm.push(Script(status=503, body={"error": {"message": "engine dead", "code": 503}}))
    got = Received()
    async with connect(url) as ws:
        await send(ws, type="input_text.append", text="Hello there. ")
        error = await read_until(ws, got, "error")
        await read_until(ws, got, "never")
    assert error is not None and "engine dead" in error["error"]["message"]
    assert got.close_code == 1011


async def test_too_much_waiting_text_closes_1008(url: str, vllm: VLLMServer) -> None:
    vllm.default_script = lambda body: Script(frames=FRAMES, delay=0.05)
    got = Received()
    async with connect(url) as ws:
        for _ in range(20):
            await send(ws, type="input_text.append", text="word " * 200)
        error = await read_until(ws, got, "error")
        await read_until(ws, got, "never")
    assert error is not None and error["error"]["code"] == "input_buffer_full"
    assert got.close_code == 1008


async def test_a_message_over_the_size_limit_closes_1009(url: str, vllm: VLLMServer) -> None:
    got = Received()
    async with connect(url, max_size=None) as ws:
        await send(ws, type="input_text.append", text="x" * (1024 * 1024 + 1))
        await read_until(ws, got, "never")
    assert got.close_code == 1009
    assert not vllm.completions


async def test_the_sessions_hold_stream_slots(url: str, vllm: VLLMServer) -> None:
    base = url.replace("ws://", "http://").removesuffix(PATH)
    async with connect(url) as ws:
        await send(ws, type="session.update")
        await read_until(ws, Received(), "session.ready")
        assert scrape(base).get("tts_active_streams") == 1
    await asyncio.sleep(0)
    assert wait_idle(base).get("tts_active_streams") == 0
