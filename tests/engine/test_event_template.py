"""The token-event template: a read of vLLM's repeated token events becomes ids in one pass,
and anything it does not cover exactly goes through the full SSE and JSON parsers."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from app.engine.completion_events import CompletionEvents
from app.engine.completion_stream import CompletionStream
from app.engine.event_template import EventTemplate
from app.engine.sse import SSEParser
from app.vocab import CUSTOM_TOKEN_BASE, END_OF_SPEECH
from tests.engine.test_low_water import backend
from tests.engine.test_low_water import event as chunked

CAPTURE = Path(__file__).resolve().parents[3] / "shared/reference/vllm-completions-stream.txt"


def capture_sections() -> dict[str, list[str]]:
    """The ``data`` of each event of each captured vLLM stream, by section title."""
    sections: dict[str, list[str]] = {}
    title = ""
    for line in CAPTURE.read_text().splitlines():
        if line.startswith("#####"):
            title = line.strip("# ")
            sections[title] = []
        elif line.startswith("data: ") and title:
            sections[title].append(line[len("data: ") :])
    return sections


SECTIONS = capture_sections()
PLAIN = SECTIONS["allowed + skip_special_tokens=false"]
TOKEN_EVENT = PLAIN[0]


def wire(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def with_token(data: str, n: int) -> str:
    chunk = json.loads(data)
    chunk["choices"][0]["text"] = f"<custom_token_{n}>"
    return json.dumps(chunk, separators=(",", ":"))


def sink() -> CompletionEvents:
    return CompletionEvents("tinyorpheus", frozenset({END_OF_SPEECH}), wake_tokens=7)


def parsed(body: bytes) -> CompletionEvents:
    """What the full parsers make of ``body``, fed to a fresh sink."""
    events = sink()
    events.feed(SSEParser().feed(body))
    return events


def test_every_captured_vllm_stream_reads_the_same_through_the_template() -> None:
    for title, stream in SECTIONS.items():
        slow, fast = sink(), sink()
        slow.feed(stream)
        fast.feed(stream[:1])  # the first event is parsed, and teaches the template
        rest = b"".join(wire(d) for d in stream[1:])
        _, taken = fast.feed_body(rest)
        fast.feed(SSEParser().feed(rest[taken:]))
        assert fast.take() == slow.take(), title
        assert (fast.finish, fast.usage, fast.done) == (slow.finish, slow.usage, slow.done)


def test_a_run_of_captured_token_events_is_read_in_one_pass() -> None:
    events = sink()
    events.feed([TOKEN_EVENT])
    body = b"".join(wire(with_token(TOKEN_EVENT, 10 + n)) for n in range(13))
    assert events.feed_body(body) == (True, len(body))  # 14 tokens: two frames are whole
    assert events.take()[1:] == [CUSTOM_TOKEN_BASE + 10 + n for n in range(13)]
    assert events.wanted == 7


def test_a_template_is_only_learnt_from_a_slot_that_is_the_token_text() -> None:
    assert EventTemplate.learn(TOKEN_EVENT) is not None
    token = '"<custom_token_5>"'
    not_one = [
        '{"choices":[{"index":0,"text":"hello"}]}',
        '{"choices":[{"index":0,"text":"<custom_token_5><custom_token_6>"}]}',
        # The same spelling twice: which one is the slot is not known.
        f'{{"choices":[{{"index":0,"logprobs":{{"text":{token}}},"text":{token}}}]}}',
        # The only compact "text" field is not choices[0].text.
        f'{{"choices":[{{"index":0, "text": {token}}}],"meta":{{"text":{token}}}}}',
        f'{{"choices":[{{"index":0,"text":{token}}}],"choices":[]}}',
    ]
    for data in not_one:
        assert EventTemplate.learn(data) is None, data


PIECES = st.one_of(
    st.integers(min_value=0, max_value=999_999_999).map(lambda n: wire(with_token(TOKEN_EVENT, n))),
    st.sampled_from([wire(d) for d in PLAIN[-3:]]),  # the finish, [DONE]
    st.sampled_from(
        [
            wire(TOKEN_EVENT).replace(b"\n\n", b"\r\n\r\n"),
            wire(TOKEN_EVENT).replace(b'"index":0', b'"index":1'),
            wire(TOKEN_EVENT)[:-1],
            # Another stream's event, and a spelling outside the slot: the one expression
            # finds their tokens, but they are not the template's events.
            wire(TOKEN_EVENT.replace('"id":"cmpl-', '"id":"cmpl-x')),
            wire(TOKEN_EVENT.replace('"logprobs":null', '"logprobs":"<custom_token_7>"')),
            wire(TOKEN_EVENT) + b"<custom_token_7>",
            b": keep-alive\n\n",
            b"data: \xff\n\n",
        ]
    ),
)


@given(st.lists(PIECES, min_size=1, max_size=12))
def test_the_template_and_the_parsers_after_it_read_a_body_as_the_parsers_alone_do(
    pieces: list[bytes],
) -> None:
    body = b"".join(pieces)
    events = sink()
    events.feed([TOKEN_EVENT])
    events.take()
    _, taken = events.feed_body(body)
    events.feed(SSEParser().feed(body[taken:]))
    full = parsed(body)
    assert events.take() == full.take()
    assert (events.finish, events.usage, events.done) == (full.finish, full.usage, full.done)
    assert repr(events.error) == repr(full.error)
    assert taken == token_run(body)  # the leading whole token events, no byte more


def token_run(body: bytes) -> int:
    """The bytes of the whole events of `TOKEN_EVENT`'s shape that ``body`` starts with."""
    at = 0
    while (end := body.find(b"\n\n", at)) >= 0:
        spelling = re.fullmatch(rb"data: .*<custom_token_(\d+)>.*\n\n", body[at : end + 2], re.S)
        if spelling is None:
            break
        if body[at : end + 2] != wire(with_token(TOKEN_EVENT, int(spelling.group(1)))):
            break
        at = end + 2
    return at


def test_a_backend_whose_events_change_shape_loses_the_template() -> None:
    events = sink()
    events.feed([TOKEN_EVENT])
    other = wire(TOKEN_EVENT.replace('"created":', '"created":1'))
    for _ in range(8):
        assert events.feed_body(other) == (False, 0)
    assert events.feed_body(wire(TOKEN_EVENT)) == (False, 0)  # dropped: parsed from now on


class CountingEvents(CompletionEvents):
    """Counts the sink calls, parsed or read through the template."""

    calls = 0
    templated = 0
    """Tokens read through the template."""

    def feed(self, events: list[str]) -> bool:
        self.calls += 1
        return super().feed(events)

    def feed_body(self, body: bytes) -> tuple[bool, int]:
        before = self._received
        look, taken = super().feed_body(body)
        if taken:
            self.calls += 1
            self.templated += self._received - before
        return look, taken


async def test_a_read_of_many_chunked_events_reaches_the_sink_once() -> None:
    tokens = [100 + n for n in range(70)]

    async def script(writer: asyncio.StreamWriter) -> None:
        for start in range(0, len(tokens), 7):  # a frame of events per write
            writer.write(
                b"".join(chunked(with_token(TOKEN_EVENT, n)) for n in tokens[start : start + 7])
            )
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"".join(chunked(d) for d in PLAIN[-2:]) + b"0\r\n\r\n")  # finish, DONE

    async with backend(script) as endpoint:
        loop = asyncio.get_running_loop()
        events = CountingEvents("tinyorpheus", frozenset({END_OF_SPEECH}), wake_tokens=7)
        stream = await CompletionStream.open(endpoint, "/", b"{}", {}, events, connect_timeout=2)
        await stream.response()
        ids: list[int] = []
        end = loop.time() + 10
        while not events.done and stream.failure is None and loop.time() < end:
            await stream.wait(end)
            ids += events.take()
        stream.close()
    assert ids == [CUSTOM_TOKEN_BASE + n for n in tokens] + [CUSTOM_TOKEN_BASE + 28324]
    assert events.finish == "length"
    # One sink call per read, not per event; the template read all but the first frame.
    assert events.calls <= 12, events.calls
    assert events.templated >= 63, events.templated
