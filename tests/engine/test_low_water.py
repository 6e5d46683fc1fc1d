"""The receive low-water mark: one wake-up per frame of tokens, and never a wait for bytes
that do not come. A real asyncio server on loopback streams vLLM's events at a pace."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from app.engine.completion_events import CompletionEvents
from app.engine.completion_stream import CompletionStream, Endpoint, _expire
from app.engine.low_water import LowWater
from app.vocab import CUSTOM_TOKEN_BASE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_RCVLOWAT wakes epoll on Linux"
)

STOP = 128258


def event(data: str) -> bytes:
    raw = f"data: {data}\n\n".encode()
    return f"{len(raw):x}\r\n".encode() + raw + b"\r\n"


def token_event(n: int) -> bytes:
    choice = {"index": 0, "text": f"<custom_token_{10 + n % 4000}>", "logprobs": None,
              "finish_reason": None, "stop_reason": None}  # fmt: skip
    body = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "m",
            "choices": [choice]}  # fmt: skip
    return event(json.dumps(body, separators=(",", ":")))


FINISHED = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}  # fmt: skip
FINISH = event(json.dumps(FINISHED)) + event("[DONE]") + b"0\r\n\r\n"

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@asynccontextmanager
async def backend(
    script: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[Endpoint]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD)
        try:
            await script(writer)
        finally:
            await asyncio.sleep(30)  # keep the connection open: no FIN ends the wait
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Endpoint("127.0.0.1", port, "/", tls=False)
    finally:
        server.close()


def paced(
    tokens: int, rate: float, *, finish: bool = True
) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    async def script(writer: asyncio.StreamWriter) -> None:
        start = time.monotonic()
        for n in range(tokens):
            await asyncio.sleep(max(0.0, start + (n + 1) / rate - time.monotonic()))
            writer.write(token_event(n))
            await writer.drain()
        if finish:
            writer.write(FINISH)
            await writer.drain()

    return script


class CountingStream(CompletionStream):
    reads = 0

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        super().data_received(data)


async def consume(
    endpoint: Endpoint, *, deadline_s: float = 10.0, away: float = 0.0
) -> tuple[CountingStream, list[int]]:
    """Read like the HTTP engine does: wait for the sink, take, repeat until finished;
    ``away``: seconds the consumer is busy after each take (decoding, a slow client)."""
    loop = asyncio.get_running_loop()
    events = CompletionEvents("m", frozenset({STOP}), wake_tokens=7)
    stream = await CountingStream.open(endpoint, "/", b"{}", {}, events, connect_timeout=2)
    assert isinstance(stream, CountingStream)
    await stream.response()
    ids: list[int] = []
    end = loop.time() + deadline_s
    while events.finish is None and stream.failure is None and loop.time() < end:
        await stream.wait(end)
        ids += events.take()
        if away:
            await asyncio.sleep(away)
    stream.close()
    ids += events.take()
    return stream, ids


async def test_a_paced_stream_wakes_the_reader_about_once_a_frame() -> None:
    tokens = 140  # 20 frames at 200 tokens/s: 0.7 s
    async with backend(paced(tokens, 200.0)) as endpoint:
        stream, ids = await consume(endpoint)
    assert ids == [CUSTOM_TOKEN_BASE + 10 + n for n in range(tokens)]
    # One read per token without the mark; with it about one per frame, plus the start-up
    # (the pace and the event size are learnt from the first reads) and the finish.
    assert stream.reads <= tokens // 3, stream.reads


async def test_the_first_frame_comes_in_a_read_once_one_token_is_in() -> None:
    async with backend(paced(7 * 3, 200.0)) as endpoint:
        stream, _, got = await read_frames(endpoint, 1)
        stream.close()
    # The headers, the first token (a token's size), the other six: not a read per token
    # while the pace is still unknown.
    assert isinstance(stream, CountingStream)
    assert stream.reads <= 3, stream.reads
    assert got[:7] == [CUSTOM_TOKEN_BASE + 10 + n for n in range(7)]


@pytest.mark.parametrize("tokens", [7 * 5 + 3, 3])  # 3: within the first frame's wait
async def test_a_stream_that_ends_mid_frame_on_an_open_connection_is_not_held(
    tokens: int,
) -> None:
    # Three tokens of an unfinished frame, then the finish.
    async with backend(paced(tokens, 200.0)) as endpoint:
        started = time.monotonic()
        _, ids = await consume(endpoint)
        took = time.monotonic() - started
    assert len(ids) == tokens
    # The finish is in well before the server's 30 s: the mark never waits past patience.
    assert took < tokens / 200.0 + 1.0, took


async def read_frames(
    endpoint: Endpoint, frames: int
) -> tuple[CompletionStream, CompletionEvents, list[int]]:
    """A stream opened and read, as the engine reads, until ``frames`` frames are taken."""
    loop = asyncio.get_running_loop()
    events = CompletionEvents("m", frozenset({STOP}), wake_tokens=7)
    stream = await CountingStream.open(endpoint, "/", b"{}", {}, events, connect_timeout=2)
    await stream.response()
    got: list[int] = []
    while len(got) < 7 * frames:
        await stream.wait(loop.time() + 3.0)
        got += events.take()
    return stream, events, got


async def test_a_stall_mid_frame_still_reads_what_came() -> None:
    async with backend(paced(7 * 4 + 2, 200.0, finish=False)) as endpoint:
        loop = asyncio.get_running_loop()
        stream, events, got = await read_frames(endpoint, 4)
        waited = loop.time()
        await stream.wait(waited + 2.0)  # the frame never completes: no wake until then
        stream.close()
    # The two tokens of that frame were read soon after they came, under the mark's
    # patience, not at the deadline: the engine's stall timer counts from real data.
    assert len(got) + events.backlog == 30
    assert stream.last_data - waited < 0.5


def test_the_mark_follows_the_bytes_of_the_tokens_still_wanted() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        with client:
            with_headers = LowWater(client)
            with_headers.observe(300, 1, now=0.0, size=False)  # the headers came with it
            with_headers.want(6)
            assert with_headers.mark == 1
            low = LowWater(client)
            low.want(7)
            assert low.mark == 1  # nothing learnt yet: no mark
            low.observe(200, 1, now=0.005)
            low.want(6)  # a token's size is known: the rest of the frame in one read
            assert low.mark == int(5.5 * 200)
            assert low.patience(6) == pytest.approx(2 * 6 / 82 + 0.05)  # real time, assumed
            low.observe(200, 1, now=0.015)
            low.want(7)
            assert low.mark == int(6.5 * 200)
            assert client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == low.mark
            assert low.patience(7) == pytest.approx(2 * 7 * 0.01 + 0.05)
            low.hold_off()
            assert client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
            low.want(7)
            assert low.mark == 1  # held off until data arrives again
            low.observe(200, 1, now=0.02)
            low.want(1)
            assert low.mark == 100  # half a token: the last one is never held for the next


async def test_a_call_from_the_sink_just_after_the_patience_ran_out_is_not_missed() -> None:
    async with backend(paced(7 * 3, 200.0, finish=False)) as endpoint:
        loop = asyncio.get_running_loop()
        stream, events, _ = await read_frames(endpoint, 3)
        low = stream._low_water
        assert low is not None and low.patience(events.wanted) is not None  # two limits
        waiter = asyncio.create_task(stream.wait(loop.time() + 30.0))
        await asyncio.sleep(0)  # it waits under the mark's patience
        wake = stream._wake
        assert wake is not None
        # The patience runs out and, before the reader resumes, the sink asks for it: the
        # reader returns now, not at the deadline.
        _expire(wake)
        stream._notify()
        await asyncio.wait_for(waiter, 2.0)
        stream.close()


async def test_what_comes_while_the_consumer_is_away_waits_for_it_in_the_kernel() -> None:
    frames = 60  # at 300 tokens/s: 1.4 s, the consumer away 6 frames at a time
    tokens = 7 * frames
    async with backend(paced(tokens, 300.0)) as endpoint:
        stream, ids = await consume(endpoint, away=0.14)
    assert ids == [CUSTOM_TOKEN_BASE + 10 + n for n in range(tokens)]
    # Two reads each time the consumer is away (the frame it will take, then all that came
    # while it was away) and the start-up's: far fewer than a read per frame. Without the
    # hold a consumer away sees ~one read per token here.
    assert stream.reads < frames * 3 // 4, stream.reads


async def test_a_consumer_back_from_away_gets_what_came_at_once() -> None:
    async with backend(paced(7 * 8, 300.0, finish=False)) as endpoint:
        loop = asyncio.get_running_loop()
        stream, events, got = await read_frames(endpoint, 2)
        await asyncio.sleep(0.3)  # away: the rest of the stream comes meanwhile
        low = stream._low_water
        assert low is not None and low.holding and low.waiting() > 0
        assert stream.quiet_since == pytest.approx(loop.time(), abs=0.05)  # not a stall
        back = loop.time()
        await stream.wait(back + 5.0)
        took = loop.time() - back
        ids = events.take()
        stream.close()
    # All that was held, in the one wait, without waiting for a frame that never comes.
    assert len(got) + len(ids) == 7 * 8
    assert took < 0.1, took
