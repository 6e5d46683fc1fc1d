"""HttpCompletionsEngine against the vLLM-compatible server over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.engine.base import NON_TOKEN, GenerationParams, Prompt, TokenBatch
from app.engine.http import HttpCompletionsEngine
from app.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    Overloaded,
)
from tests.support.vllm_server import (
    END_OF_SPEECH,
    Script,
    VLLMServer,
    orpheus_tokens,
    unused_port_url,
)

PROMPT = Prompt("<custom_token_3><|begin_of_text|>tara: Hello world<|eot_id|>")
PARAMS = GenerationParams(max_tokens=500, seed=7, stop_token_ids=(END_OF_SPEECH,))
AUDIO = [128266 + slot * 4096 + 100 + i for i, slot in enumerate([0, 1, 2, 3, 4, 5, 6] * 3)]


def make_engine(urls: list[str], model: str = "tinyorpheus", **kw: object) -> HttpCompletionsEngine:
    options: dict[str, object] = {
        "connect_timeout": 1.0,
        "first_token_timeout": 2.0,
        "inter_token_timeout": 1.0,
    }
    options.update(kw)
    return HttpCompletionsEngine(urls, model, **options)  # type: ignore[arg-type]


async def collect(
    engine: HttpCompletionsEngine,
    params: GenerationParams = PARAMS,
    into: list[TokenBatch] | None = None,
) -> list[TokenBatch]:
    batches = into if into is not None else []
    async for batch in engine.stream(PROMPT, params):
        batches.append(batch)
    return batches


def ids(batches: list[TokenBatch]) -> list[int]:
    return [i for b in batches for i in b.token_ids]


def check_finished(batches: list[TokenBatch], reason: str) -> None:
    assert batches[-1].finish_reason == reason
    assert all(b.finish_reason is None for b in batches[:-1])


# Lines captured from real vLLM 0.32 (/work/shared/reference/vllm-completions-stream.txt).
CAPTURED_TOKEN = (
    'data: {"id":"cmpl-ad75022d8e5f3027","object":"text_completion","created":1795316111,'
    '"model":"tinyorpheus","choices":[{"index":0,"text":"<custom_token_13231>","logprobs":null,'
    '"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}'
)
CAPTURED_STOP = (
    'data: {"id":"cmpl-a8f3f7e811d6be39","object":"text_completion","created":1795316115,'
    '"model":"tinyorpheus","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"stop",'
    '"stop_reason":128258,"prompt_token_ids":null,"token_ids":null}],'
    '"system_fingerprint":"vllm-0.32.0-5178684f"}'
)


def _shape(line: str) -> str:
    """A data line with the values that vary (id, time, token number) masked."""
    line = re.sub(r"cmpl-[0-9a-f]{16}", "cmpl-X", line)
    line = re.sub(r'"created":\d+', '"created":0', line)
    return re.sub(r"<custom_token_\d+>", "<custom_token_N>", line)


def test_server_wire_format_matches_the_vllm_capture(vllm: VLLMServer) -> None:
    body = {"model": "tinyorpheus", "prompt": "p", "max_tokens": 50, "stream": True}
    body |= {"skip_special_tokens": False, "stop_token_ids": [END_OF_SPEECH]}
    vllm.push(Script(tokens=[128300, END_OF_SPEECH]))
    response = httpx.post(f"{vllm.url}/v1/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert [_shape(e) for e in events[:2]] == [_shape(CAPTURED_TOKEN), _shape(CAPTURED_STOP)]
    assert len({json.loads(e[6:])["id"] for e in events[:2]}) == 1
    wrong = httpx.post(f"{vllm.url}/v1/completions", json=body | {"model": "nope"})
    assert wrong.status_code == 404
    assert wrong.text == (
        '{"error":{"message":"The model `nope` does not exist. Valid aliases: tinyorpheus.",'
        '"type":"NotFoundError","param":"model","code":404}}'
    )


# --- normal streams ---


async def test_default_stream_yields_the_audio_tokens_and_stops(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    batches = await collect(engine)
    assert ids(batches) == orpheus_tokens(7, vllm.frames)[:-1]
    assert all(b.token_ids for b in batches[:-1])  # what arrived together, never empty
    check_finished(batches, "stop")
    assert engine.tokens_received == 7 * vllm.frames
    assert engine.in_flight == {vllm.url: 0}


async def test_tokens_are_handed_over_in_batches(vllm: VLLMServer) -> None:
    # One token per event, paced: without batching the consumer would wake per token.
    engine = make_engine([vllm.url], batch_tokens=7)
    vllm.push(Script(tokens=AUDIO, delay=0.002))
    try:
        batches = await collect(engine)
    finally:
        await engine.aclose()
    assert ids(batches) == AUDIO
    # Every batch but the end's completes a frame: it reaches a multiple of 7 in the count.
    ends = [len(ids(batches[: k + 1])) for k in range(len(batches))]
    starts = [0, *ends]
    assert all(end // 7 > start // 7 for start, end in zip(starts, ends[:-2], strict=False))
    check_finished(batches, "stop")


async def test_request_body_and_headers(vllm: VLLMServer) -> None:
    engine = make_engine([vllm.url], api_key="sk-test")
    try:
        await collect(engine, GenerationParams(max_tokens=77, temperature=0.5, top_p=0.8, seed=3))
        await collect(engine, GenerationParams(max_tokens=9, stop_token_ids=(128258, 128009)))
    finally:
        await engine.aclose()
    first, second = (r.body for r in vllm.completions)
    assert first == {
        "model": "tinyorpheus",
        "prompt": PROMPT.text,
        "max_tokens": 77,
        "temperature": 0.5,
        "top_p": 0.8,
        "repetition_penalty": 1.1,
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
        "skip_special_tokens": False,
        "add_special_tokens": False,
    }
    assert "seed" not in second
    assert second["stop_token_ids"] == [128258, 128009]
    assert vllm.completions[0].headers["authorization"] == "Bearer sk-test"


async def test_usage_reports_the_backends_token_counts(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    batches = await collect(engine)
    usage = batches[-1].usage
    assert usage is not None
    # The test server counts one prompt token per character (it has no tokenizer).
    assert usage.prompt_tokens == len(PROMPT.text)
    assert usage.completion_tokens == 7 * vllm.frames
    assert all(b.usage is None for b in batches[:-1])


async def test_max_tokens_gives_length(engine: HttpCompletionsEngine, vllm: VLLMServer) -> None:
    batches = await collect(engine, GenerationParams(max_tokens=10, seed=7))
    assert ids(batches) == orpheus_tokens(7, vllm.frames)[:10]
    check_finished(batches, "length")
    # vLLM puts "length" on the last token's chunk; those tokens are not held back for usage.
    assert batches[-2].token_ids and not batches[-1].token_ids


@pytest.mark.parametrize(
    "script",
    [
        Script(tokens=AUDIO, per_delta=3),
        Script(tokens=AUDIO, per_delta=100),
        Script(tokens=AUDIO, chunk_chars=7),
        Script(tokens=AUDIO, chunk_chars=1),
        Script(tokens=AUDIO, write_bytes=13),
        Script(tokens=AUDIO, crlf=True, per_delta=2),
        Script(tokens=AUDIO, include_usage=True),
    ],
    ids=["3-per-delta", "all-in-one", "split-7", "split-1", "sse-split", "crlf", "usage"],
)
async def test_deltas_of_any_shape_give_the_same_tokens(
    engine: HttpCompletionsEngine, vllm: VLLMServer, script: Script
) -> None:
    vllm.push(script)
    batches = await collect(engine)
    assert ids(batches) == AUDIO
    check_finished(batches, "stop")


async def test_text_that_is_not_a_token_is_counted(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=[128300, "hello", 128301, " ", 5000, 128302]))
    batches = await collect(engine)
    assert ids(batches) == [128300, NON_TOKEN, 128301, NON_TOKEN, 128302]


async def test_token_ids_are_preferred_over_text(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    # Id 5000 has no custom-token spelling: from text it would be NON_TOKEN.
    vllm.push(Script(tokens=[128300, 5000, 128301, END_OF_SPEECH], return_token_ids=True))
    batches = await collect(engine)
    assert ids(batches) == [128300, 5000, 128301]
    check_finished(batches, "stop")


async def test_base_url_with_v1_suffix(vllm: VLLMServer) -> None:
    engine = make_engine([vllm.url + "/v1/"])
    try:
        assert ids(await collect(engine))
    finally:
        await engine.aclose()


# --- errors the backend reports ---


async def test_wrong_model_name_names_the_model(vllm: VLLMServer) -> None:
    engine = make_engine([vllm.url], model="nope")
    try:
        with pytest.raises(BackendError) as caught:
            await collect(engine)
    finally:
        await engine.aclose()
    assert not isinstance(caught.value, InvalidRequest)
    assert "does not exist" in caught.value.message
    # What to check is for the operator's log, not for the client.
    assert caught.value.detail is not None
    assert "'nope'" in caught.value.detail and "MODEL_NAME" in caught.value.detail
    assert "MODEL_NAME" not in caught.value.message


async def test_prompt_too_long_is_the_clients_fault(vllm: VLLMServer) -> None:
    engine = make_engine([vllm.url])
    try:
        with pytest.raises(InvalidRequest) as caught:
            async for _ in engine.stream(Prompt("x" * (vllm.max_model_len + 1)), PARAMS):
                pass
    finally:
        await engine.aclose()
    assert "maximum context length" in caught.value.message
    assert caught.value.param == "input_tokens"
    assert caught.value.status_code == 400


async def test_missing_prompt_keeps_param(engine: HttpCompletionsEngine) -> None:
    with pytest.raises(InvalidRequest) as caught:
        async for _ in engine.stream(Prompt(""), PARAMS):
            pass
    assert caught.value.param == "prompt"


async def test_bad_api_key_says_the_gateway_is_misconfigured(vllm: VLLMServer) -> None:
    vllm.api_key = "right"
    for key in ("wrong", None):
        engine = make_engine([vllm.url], api_key=key)
        try:
            with pytest.raises(BackendError) as caught:
                await collect(engine)
            assert "TTS_API_KEY" in str(caught.value.detail)
            assert "TTS_API_KEY" not in caught.value.message
            assert "401" in caught.value.message
        finally:
            await engine.aclose()
    engine = make_engine([vllm.url], api_key="right")
    try:
        assert ids(await collect(engine))
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (422, {"detail": "max_tokens must be at least 1"}, InvalidRequest, "max_tokens"),
        (403, {"error": "Forbidden"}, BackendError, "credentials"),
        (429, {"error": {"message": "too many", "code": 429}}, Overloaded, "too many"),
        (500, "Internal Server Error", BackendError, "Internal Server Error"),
        (503, {"error": {"message": "engine dead", "code": 503}}, BackendError, "engine dead"),
    ],
)
async def test_http_status_mapping(
    engine: HttpCompletionsEngine,
    vllm: VLLMServer,
    status: int,
    body: object,
    error: type[Exception],
    text: str,
) -> None:
    vllm.push(Script(status=status, body=body))
    with pytest.raises(error) as caught:
        await collect(engine)
    assert type(caught.value) is error
    assert text in str(caught.value)
    assert engine.in_flight == {vllm.url: 0}


async def test_inband_error_after_tokens(engine: HttpCompletionsEngine, vllm: VLLMServer) -> None:
    vllm.push(Script(tokens=AUDIO, inband_error_after=4))
    batches: list[TokenBatch] = []
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, into=batches)
    assert ids(batches) == AUDIO[:4]
    assert "allowed_token_ids" in caught.value.message
    assert caught.value.param == "allowed_token_ids"


async def test_inband_server_error(engine: HttpCompletionsEngine, vllm: VLLMServer) -> None:
    error = {"error": {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}}
    vllm.push(Script(tokens=AUDIO, inband_error_after=0, inband_error=error))
    with pytest.raises(BackendError, match="CUDA out of memory"):
        await collect(engine)


# --- broken streams ---


async def test_dropped_connection_mid_stream(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=AUDIO, drop_after=3))
    batches: list[TokenBatch] = []
    with pytest.raises(BackendError, match="dropped mid-stream"):
        await collect(engine, into=batches)
    assert ids(batches) == AUDIO[:3]
    assert vllm.completions[0].dropped


async def test_malformed_json_is_an_error(engine: HttpCompletionsEngine, vllm: VLLMServer) -> None:
    vllm.push(Script(tokens=AUDIO, malformed_after=2))
    batches: list[TokenBatch] = []
    with pytest.raises(BackendError, match="malformed JSON"):
        await collect(engine, into=batches)
    assert ids(batches) == AUDIO[:2]


@pytest.mark.parametrize("done", [True, False])
async def test_stream_without_finish_reason_is_a_failure(
    engine: HttpCompletionsEngine, vllm: VLLMServer, done: bool
) -> None:
    vllm.push(Script(tokens=AUDIO, finish=False, done=done))
    batches: list[TokenBatch] = []
    with pytest.raises(BackendError, match="without finish_reason"):
        await collect(engine, into=batches)
    assert ids(batches) == AUDIO
    assert all(b.finish_reason is None for b in batches)


async def test_finished_stream_without_done_is_fine(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=AUDIO, done=False))
    check_finished(await collect(engine), "stop")


async def test_abort_is_an_error(engine: HttpCompletionsEngine, vllm: VLLMServer) -> None:
    vllm.push(Script(tokens=AUDIO, finish_reason="abort"))
    with pytest.raises(BackendError, match="abort"):
        await collect(engine)


# --- timeouts ---


@pytest.mark.parametrize(
    "script",
    [Script(headers_delay=30), Script(first_delay=30), Script(hang_after=0)],
    ids=["no-headers", "headers-only", "hang"],
)
async def test_first_token_timeout(vllm: VLLMServer, script: Script) -> None:
    engine = make_engine([vllm.url], first_token_timeout=0.3)
    vllm.push(script)
    started = time.monotonic()
    try:
        with pytest.raises(BackendTimeout) as caught:
            await collect(engine)
    finally:
        await engine.aclose()
    assert 0.25 < time.monotonic() - started < 1.5
    assert caught.value.status_code == 504
    # The backend sees the request abandoned, so it stops generating.
    assert await vllm.completions[0].wait_disconnected(1.0)


async def test_first_token_timeout_covers_slow_headers_and_data_together(
    vllm: VLLMServer,
) -> None:
    engine = make_engine([vllm.url], first_token_timeout=0.5)
    vllm.push(Script(tokens=AUDIO, headers_delay=0.3, first_delay=0.3))
    try:
        with pytest.raises(BackendTimeout):
            await collect(engine)
    finally:
        await engine.aclose()


async def test_mid_stream_stall(vllm: VLLMServer) -> None:
    engine = make_engine([vllm.url], inter_token_timeout=0.3)
    vllm.push(Script(tokens=AUDIO, hang_after=3))
    batches: list[TokenBatch] = []
    started = time.monotonic()
    try:
        with pytest.raises(BackendTimeout, match="mid-stream") as caught:
            await collect(engine, into=batches)
    finally:
        await engine.aclose()
    assert time.monotonic() - started < 1.5
    assert ids(batches) == AUDIO[:3]
    assert caught.value.status_code == 504
    assert await vllm.completions[0].wait_disconnected(1.0)


async def test_slow_consumer_is_not_a_stall(vllm: VLLMServer) -> None:
    # The gap is measured while the engine waits, not while the consumer is busy.
    engine = make_engine([vllm.url], inter_token_timeout=0.2)
    vllm.push(Script(tokens=AUDIO[:4], delay=0.1))
    batches: list[TokenBatch] = []
    try:
        async for batch in engine.stream(PROMPT, PARAMS):
            batches.append(batch)
            await asyncio.sleep(0.3)
    finally:
        await engine.aclose()
    assert ids(batches) == AUDIO[:4]


async def test_steady_slow_tokens_within_the_gap_are_fine(vllm: VLLMServer) -> None:
    engine = make_engine([vllm.url], first_token_timeout=0.5, inter_token_timeout=0.3)
    vllm.push(Script(tokens=AUDIO[:6], first_delay=0.3, delay=0.1))
    try:
        batches = await collect(engine)
    finally:
        await engine.aclose()
    assert ids(batches) == AUDIO[:6]


# --- replicas ---


async def test_failover_from_a_dead_replica(vllm: VLLMServer) -> None:
    dead = unused_port_url()
    engine = make_engine([dead, vllm.url])
    try:
        for _ in range(3):
            check_finished(await collect(engine), "stop")
        assert engine.in_flight == {dead: 0, vllm.url: 0}
    finally:
        await engine.aclose()
    assert len(vllm.completions) == 3


def test_backend_urls_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        make_engine(["localhost:8000"])
    with pytest.raises(ValueError):
        make_engine([" "])


async def test_all_replicas_dead() -> None:
    urls = [unused_port_url(), unused_port_url()]
    engine = make_engine(urls)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await collect(engine)
        assert not await engine.ready()
    finally:
        await engine.aclose()
    assert caught.value.status_code == 503
    assert all(url in str(caught.value.detail) for url in urls)
    assert not any(url in caught.value.message for url in urls)


async def test_least_busy_replica_then_round_robin(vllm: VLLMServer) -> None:
    with VLLMServer() as other:
        engine = make_engine([vllm.url, other.url], inter_token_timeout=5)
        hang = Script(tokens=AUDIO, hang_after=1)
        vllm.push(hang, hang)
        other.push(hang)
        streams = [engine.stream(PROMPT, PARAMS) for _ in range(3)]
        try:
            for stream in streams:
                await anext(stream)  # each request is in flight before the next is routed
            assert engine.in_flight == {vllm.url: 2, other.url: 1}
            assert (len(vllm.completions), len(other.completions)) == (2, 1)
            for stream in streams:
                await stream.aclose()
            assert engine.in_flight == {vllm.url: 0, other.url: 0}
            for _ in range(4):
                await collect(engine)
            assert (len(vllm.completions), len(other.completions)) == (4, 3)
        finally:
            await engine.aclose()


async def test_ready(vllm: VLLMServer) -> None:
    dead = unused_port_url()
    for urls, expected in (([vllm.url], True), ([dead], False), ([dead, vllm.url], True)):
        engine = make_engine(urls, connect_timeout=0.5)
        try:
            assert await engine.ready() is expected
        finally:
            await engine.aclose()
    vllm.api_key = "right"
    engine = make_engine([vllm.url], api_key="wrong")
    try:
        assert not await engine.ready()
    finally:
        await engine.aclose()


# --- cancellation ---


async def first_batches(stream: AsyncIterator[TokenBatch], count: int) -> list[TokenBatch]:
    return [await anext(stream) for _ in range(count)]


async def test_closing_the_stream_disconnects_the_backend(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=AUDIO, delay=0.05))
    stream = engine.stream(PROMPT, PARAMS)
    assert ids(await first_batches(stream, 2)) == AUDIO[:2]
    closed = time.monotonic()
    await stream.aclose()
    record = vllm.completions[0]
    assert await record.wait_disconnected(1.0)
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed < 1.0
    assert not record.completed
    assert engine.in_flight == {vllm.url: 0}


async def test_breaking_out_of_the_loop_disconnects_the_backend(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=AUDIO, delay=0.05))
    async for batch in engine.stream(PROMPT, PARAMS):
        assert batch.token_ids == AUDIO[:1]
        break
    assert await vllm.completions[0].wait_disconnected(1.0)


async def test_cancelling_the_consumer_disconnects_the_backend(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=AUDIO, hang_after=2))
    two_received = asyncio.Event()

    async def consume() -> None:
        count = 0
        async for batch in engine.stream(PROMPT, PARAMS):
            count += len(batch.token_ids)
            if count == 2:
                two_received.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(two_received.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await vllm.completions[0].wait_disconnected(1.0)
    assert engine.in_flight == {vllm.url: 0}


# --- what clients are told ---


@pytest.mark.parametrize("code", ["9" * 5000, 10**30, "²⁰⁰", True, -1, "abc"])
async def test_inband_error_with_an_absurd_code_is_a_backend_error(
    engine: HttpCompletionsEngine, vllm: VLLMServer, code: object
) -> None:
    error = {"error": {"message": "odd", "type": "X", "code": code}}
    vllm.push(Script(tokens=AUDIO, inband_error_after=1, inband_error=error))
    with pytest.raises(BackendError, match="odd") as caught:
        await collect(engine)
    assert caught.value.status_code == 502


async def test_backend_bodies_reach_clients_short_and_without_addresses(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    body = "upstream http://10.1.2.3:8000/v1/completions failed at 10.1.2.3:8000\n" + "x" * 5000
    vllm.push(Script(status=503, body=body))
    with pytest.raises(BackendError) as caught:
        await collect(engine)
    message = caught.value.message
    assert len(message) <= 260 and "10.1.2.3" not in message and "http://" not in message
    assert "upstream" in message and "\n" not in message
    assert "10.1.2.3" in str(caught.value.detail)  # for the operator's log


async def test_an_html_error_page_is_not_relayed(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(status=502, body="<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"))
    with pytest.raises(BackendError) as caught:
        await collect(engine)
    assert "<" not in caught.value.message and "nginx" not in caught.value.message


async def test_the_consumers_wake_up_comes_as_a_tick_while_the_backend_pauses(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=[*AUDIO, END_OF_SPEECH], pause_after=7, pause=0.8))
    due: list[float] = []

    def wake() -> float | None:
        return due[0] if due else None

    seen: list[str] = []
    batches: list[TokenBatch] = []
    async for batch in engine.stream(PROMPT, PARAMS, wake=wake):
        if batch.tick:
            seen.append("tick")
            due.clear()  # one is enough: then wait for tokens again
            continue
        batches.append(batch)
        seen += ["token"] * len(batch.token_ids)
        if len(seen) == 7:  # the first frame is in; the backend pauses before the next
            due.append(time.perf_counter() + 0.1)
    assert ids(batches) == AUDIO
    check_finished(batches, "stop")
    # The tick came in the pause, between the first frame and the second, and only once.
    assert seen == ["token"] * 7 + ["tick"] + ["token"] * 14


async def test_a_stream_without_a_wake_up_has_no_ticks(
    engine: HttpCompletionsEngine, vllm: VLLMServer
) -> None:
    vllm.push(Script(tokens=[*AUDIO, END_OF_SPEECH], pause_after=7, pause=0.3))
    batches = await collect(engine)
    assert not any(batch.tick for batch in batches)
    assert ids(batches) == AUDIO
